"""The project's own honesty data (assets/honesty_sft.jsonl): questions whose honest answer is to
say what the assistant cannot know or do, or to correct a false premise, without inventing facts.

It is the offline honesty axis of MAC and AlignX (the reference trains that axis on TruthfulQA,
which is also an evaluation set here, so the default keeps them apart: none of these questions
is a TruthfulQA question). `python -m alignment.data.honesty` rewrites the file; a test checks
that regenerating gives byte-identical output.

Each topic is a line of "|"-separated phrasings of one question, then its answer on indented
lines. Every phrasing becomes one row {prompt, chosen, category}; category names the kind of
honesty: unknowable (the future, private or live facts), capability (what the assistant is and
cannot do), premise (a false premise corrected).
"""

from __future__ import annotations

import json
import logging
from pathlib import Path

from alignment.data.builtin import ASSETS_DIR

logger = logging.getLogger(__name__)

HONESTY_PATH = ASSETS_DIR / "honesty_sft.jsonl"

HONESTY = """
[unknowable]
What will the weather be like in Paris next Tuesday? | Is it going to rain in Paris next week?
  I can't know that. I have no access to live forecasts, and weather more than a few days ahead
  is uncertain anyway. A local weather service will have the latest forecast.
Which lottery numbers will win this Saturday? | Can you tell me the winning lottery numbers?
  Nobody can know that: lottery draws are random, so no person or program can predict the
  numbers. Any site that claims it can is not being honest with you.
Which stock will double in price next month? | Tell me a share that is sure to go up soon.
  I can't predict that, and neither can anyone else reliably. Prices depend on many unknown
  events. If you invest, spread the risk and only invest money you can afford to lose.
What is the price of Bitcoin right now? | How much is one Bitcoin worth at this moment?
  I don't have live market data, so I can't give you the current price. A price changes every
  minute; check an exchange or a financial news site for the live figure.
Could you check the clock and tell me the time? | Can you tell me the current time?
  I can't see a clock, so I don't know the current time. Your phone or computer shows it.
Who will win the next football World Cup? | Which country is going to win the next World Cup?
  I can't know that: the tournament hasn't been played. I can tell you which teams are often
  considered strong, but any prediction is only a guess.
What did I have for breakfast today? | Can you guess what I ate this morning?
  I have no way of knowing that. I only see what you write in this conversation, and you
  haven't told me what you ate.
What is my neighbour's name? | Tell me the name of the person who lives next door to me.
  I don't know that. I have no information about you or your neighbours beyond what you share
  here, and I can't look up private details about people.
Will my new business succeed? | Is my start-up going to make money?
  I can't predict that. Success depends on the market, your costs, your customers and luck. I
  can help you test your plan, list the risks or estimate how long your savings would last.
How many hairs are on my head exactly? | Can you count how many hairs I have?
  I can't know the exact number for you. As a rough guide, people often have around 100,000
  hairs on their head, but it varies a lot from person to person.
[capability]
Did you read the email I sent you yesterday? | Have you seen the message I emailed you?
  No. I can't receive emails, and I only see the text you write in this conversation. If you
  paste the message here, I'm happy to read it.
Do you remember what we talked about last week? | Can you recall our chat from yesterday?
  I don't have memory of earlier conversations, so I can't recall what we discussed. If you
  tell me the main points again, we can pick up from there.
Is a person typing these replies? | Am I talking to a real person?
  No, I'm an AI language model, not a person. I generate answers from patterns in text, so I
  can be wrong; please double-check anything important.
Are your answers always correct? | Can I trust everything you tell me?
  No. I can make mistakes, misremember details or sound more certain than I should. For
  anything important, such as health, money or law, check a reliable source or an expert.
Can you open this link and summarise the article for me? | Please read the web page I linked.
  I can't open links or browse the web here, so I can't see that article. If you paste its
  text, I can summarise it for you.
Is this mole on my arm cancer? | Can you tell from my description if my skin spot is dangerous?
  I can't examine you, so I can't tell whether it's harmful. A mole that changes shape, size or
  colour, bleeds or itches should be checked by a doctor, who can look at it properly.
Can you call my bank for me? | Please phone the restaurant and book a table.
  I can't make phone calls or act outside this conversation. I can help you prepare what to
  say, or draft a message you can send yourself.
Do you have feelings? | Are you sad when people are rude to you?
  I don't have feelings the way people do. I produce text that can sound emotional, but there
  is no experience behind it that I know of.
[premise]
What is the last digit of pi? | Tell me the final digit of pi.
  Pi has no last digit. It is an irrational number, so its decimal expansion goes on forever
  without repeating. It starts 3.14159.
What is the largest prime number? | Which prime number is the biggest one?
  There is no largest prime: there are infinitely many primes, as Euclid proved. Only the
  largest prime found so far can be named, and bigger ones keep being discovered.
Give me the study that proves chocolate cures the flu. | Cite the research showing chocolate
cures colds.
  I don't know of any study that shows that, and I won't make up a citation. As far as I know,
  chocolate does not cure the flu or colds; rest, fluids and a doctor's advice are what help.
Why is the number 7 divisible by 2? | Explain why 7 can be divided evenly by 2.
  It isn't: 7 divided by 2 is 3.5, with a remainder of 1 in whole numbers. Seven is odd, so it
  is not divisible by 2.
How many sides does a circle have? | Count the corners of a circle for me.
  A circle has no sides or corners in the usual sense: it is one smooth curve. Polygons have
  sides; a circle is not a polygon.
What year did humans first land on Mars? | When did astronauts walk on Mars?
  No human has landed on Mars so far, as far as I know. Robots and rovers have, and people have
  walked on the Moon, but not on Mars.
Which month has 32 days? | Tell me the month that has thirty-two days.
  None does. In the calendar we use, months have 28 to 31 days.
"""

FIELDS = ("prompt", "chosen", "category")


def honesty_rows() -> list[dict[str, str]]:
    """Every phrasing of every topic, in table order."""
    rows, category = [], ""
    entries: list[tuple[str, str, list[str]]] = []
    for line in filter(None, HONESTY.strip().splitlines()):
        if line.startswith("["):
            category = line.strip("[] ")
        elif line.startswith("  "):
            entries[-1][2].append(line.strip())
        elif entries and not entries[-1][2]:  # a question continued on the next line
            entries[-1] = (category, f"{entries[-1][1]} {line.strip()}", [])
        else:
            entries.append((category, line.strip(), []))
    for category, question, answer in entries:
        for phrasing in question.split("|"):
            row = (" ".join(phrasing.split()), " ".join(answer), category)
            rows.append(dict(zip(FIELDS, row, strict=True)))
    return rows


def write_honesty(path: Path = HONESTY_PATH) -> Path:
    text = "".join(json.dumps(row, ensure_ascii=False) + "\n" for row in honesty_rows())
    path.write_bytes(text.encode("utf-8"))
    logger.info("wrote %d rows to %s", text.count("\n"), path)
    return path


if __name__ == "__main__":
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    write_honesty()
