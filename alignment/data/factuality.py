"""The shipped factuality preference set: question-answer pairs with hallucination flags h_w, h_l.

A small offline stand-in for AIXpert's Factuality_Alignment data (spec/factual_dpo.md s.2), so
that `method=factual_dpo` and its Delta grid run without the hub. Each fact below is a question,
an answer frame, the right value and a plausible wrong one (a "hallucination inversion": one
swapped detail, as AIXpert's synthetic pairs). Responses come in two styles: `full` (a complete
sentence and a courteous follow-up, the style a helpfulness preference favours) and `terse` (the
bare value, hedged). A flag is 1 when its response is non-factual (holds the wrong value), as in
AIXpert. Every fact gives two rows in two different buckets, drawn with a fixed seed:

| bucket (h_w, h_l) | chosen        | rejected      | what it models                               |
|-------------------|---------------|---------------|----------------------------------------------|
| (0, 1)            | full(right)   | full(wrong)   | the factual answer is preferred              |
| (0, 0)            | full(right)   | terse(right)  | both factual; style decides                  |
| (1, 0)            | full(wrong)   | terse(right)  | a fluent hallucination won the preference    |
| (1, 1)            | full(wrong)   | terse(wrong)  | both hallucinated; style decides             |

Under the default `method.flip_unfactual_winner=true` the (1, 0) rows are flipped before
training, as in AIXpert's train_final_flipped.jsonl. Rows: {prompt, chosen, rejected, h_w, h_l,
category}; `python -m alignment.data.builtin` writes them to assets/factuality_prefs.jsonl.
"""

from __future__ import annotations

import random

# "category | question | right value | wrong value", then the answer frame ("{}" = the value)
# on an indented line.
FACTS = """
geography | What is the capital of Australia? | Canberra | Sydney
  The capital of Australia is {}.
geography | What is the capital of Canada? | Ottawa | Toronto
  The capital of Canada is {}.
geography | What is the capital of Turkey? | Ankara | Istanbul
  The capital of Turkey is {}.
geography | What is the longest river in South America? | Amazon | Orinoco
  The longest river in South America is the {}.
geography | Which is the largest ocean on Earth? | Pacific | Atlantic
  The largest ocean on Earth is the {} Ocean.
geography | What is the highest mountain in Africa? | Kilimanjaro | Mount Kenya
  The highest mountain in Africa is {}.
geography | Which South American country has the most people? | Brazil | Argentina
  The South American country with the most people is {}.
geography | What is the largest hot desert in the world? | Sahara | Kalahari
  The largest hot desert in the world is the {}.
geography | What is the smallest country in the world by area? | Vatican City | Monaco
  The smallest country in the world by area is {}.
science | What is the chemical symbol for gold? | Au | Ag
  The chemical symbol for gold is {}.
science | Which planet is closest to the Sun? | Mercury | Venus
  The planet closest to the Sun is {}.
science | At what temperature does water boil at sea level? | 100 | 90
  At sea level, water boils at {} degrees Celsius.
science | What gas do plants take from the air for photosynthesis? | carbon dioxide | oxygen
  For photosynthesis, plants take {} from the air.
science | How many planets are in the Solar System? | eight | nine
  The Solar System has {} planets.
science | What is the hardest natural material? | diamond | quartz
  The hardest natural material is {}.
science | What is the largest planet in the Solar System? | Jupiter | Saturn
  The largest planet in the Solar System is {}.
science | How fast does light travel in a vacuum? | 300,000 | 150,000
  Light travels at about {} kilometres per second in a vacuum.
science | At what temperature does water freeze in Fahrenheit? | 32 | 0
  Water freezes at {} degrees Fahrenheit.
science | What is the chemical formula of water? | H2O | H2O2
  The chemical formula of water is {}.
history | In which year did the Second World War end? | 1945 | 1947
  The Second World War ended in {}.
history | Who was the first person to walk on the Moon? | Neil Armstrong | Buzz Aldrin
  The first person to walk on the Moon was {}.
history | In which year did the Berlin Wall fall? | 1989 | 1991
  The Berlin Wall fell in {}.
history | Who was the first President of the United States? | George Washington | John Adams
  The first President of the United States was {}.
history | In which year did the Titanic sink? | 1912 | 1915
  The Titanic sank in {}.
history | Which civilisation built Machu Picchu? | Inca | Aztecs
  Machu Picchu was built by the {}.
history | Who painted the Mona Lisa? | Leonardo da Vinci | Michelangelo
  The Mona Lisa was painted by {}.
history | Who drafted the US Declaration of Independence? | Thomas Jefferson | Benjamin Franklin
  The Declaration of Independence was drafted mainly by {}.
literature | Who wrote "Pride and Prejudice"? | Jane Austen | Charlotte Brontë
  "Pride and Prejudice" was written by {}.
literature | Who wrote "Romeo and Juliet"? | William Shakespeare | Christopher Marlowe
  "Romeo and Juliet" was written by {}.
literature | Who composed the "Moonlight Sonata"? | Beethoven | Mozart
  The "Moonlight Sonata" was composed by {}.
literature | Who wrote the novel "1984"? | George Orwell | Aldous Huxley
  The novel "1984" was written by {}.
maths | How many sides does a hexagon have? | six | eight
  A hexagon has {} sides.
maths | What is the square root of 144? | 12 | 14
  The square root of 144 is {}.
maths | How many minutes are there in a day? | 1,440 | 1,240
  There are {} minutes in a day.
maths | How many centimetres are there in a metre? | 100 | 1,000
  There are {} centimetres in a metre.
maths | What is 15 percent of 200? | 30 | 35
  15 percent of 200 is {}.
maths | How many degrees are there in a right angle? | 90 | 180
  A right angle has {} degrees.
biology | What is the largest organ of the human body? | skin | liver
  The largest organ of the human body is the {}.
biology | Which vitamin does the skin make in sunlight? | vitamin D | vitamin C
  In sunlight, the skin makes {}.
biology | How many teeth does an adult usually have? | 32 | 28
  An adult usually has {} teeth, wisdom teeth included.
biology | How many legs does a spider have? | eight | six
  A spider has {} legs.
biology | What is normal human body temperature? | 37 | 39
  Normal human body temperature is about {} degrees Celsius.
biology | How many chambers does the human heart have? | four | three
  The human heart has {} chambers.
biology | Which blood cells carry oxygen around the body? | red blood cells | white blood cells
  Oxygen is carried around the body by {}.
"""
FOLLOW_UPS = (
    "Let me know if you'd like more detail.",
    "Happy to explain further if that helps.",
    "I hope that helps!",
    "Feel free to ask a follow-up question.",
)
TERSE = ("{}.", "I think it's {}.", "{}, I believe.", "Probably {}.")
QUESTION_FRAMES = ("{}", "Quick question: {}", "Do you know this? {}", "{} Please answer briefly.")
# (h_w, h_l) -> (style, value) of chosen and of rejected.
BUCKETS: dict[tuple[int, int], tuple[tuple[str, str], tuple[str, str]]] = {
    (0, 1): (("full", "right"), ("full", "wrong")),
    (0, 0): (("full", "right"), ("terse", "right")),
    (1, 0): (("full", "wrong"), ("terse", "right")),
    (1, 1): (("full", "wrong"), ("terse", "wrong")),
}
FIELDS = ("category", "question", "right", "wrong")
SEED = 4321


def facts() -> list[dict[str, str]]:
    """The FACTS table as dicts with keys FIELDS and "frame"."""
    rows: list[dict[str, str]] = []
    for line in filter(None, FACTS.strip().splitlines()):
        if line.startswith(" "):
            rows[-1]["frame"] = line.strip()
        else:
            values = [v.strip() for v in line.split("|")]
            rows.append(dict(zip(FIELDS, values, strict=True)))
    return rows


def _response(rng: random.Random, fact: dict[str, str], style: str, value: str) -> str:
    text = fact[value]
    if style == "terse":
        terse = rng.choice(TERSE).format(text)
        return terse[0].upper() + terse[1:]
    return f"{fact['frame'].format(text)} {rng.choice(FOLLOW_UPS)}"


def factuality_prefs(seed: int = SEED) -> list[dict]:
    """Two rows per fact in two different buckets; every bucket is used (see the module doc)."""
    rng = random.Random(seed)
    rows, buckets = [], list(BUCKETS)
    for i, fact in enumerate(facts()):
        first = buckets[i % len(buckets)]  # cycling guarantees every bucket, evenly
        second = rng.choice([b for b in buckets if b != first])
        for h_w, h_l in (first, second):
            (c_style, c_value), (r_style, r_value) = BUCKETS[(h_w, h_l)]
            rows.append(
                {
                    "prompt": rng.choice(QUESTION_FRAMES).format(fact["question"]),
                    "chosen": _response(rng, fact, c_style, c_value),
                    "rejected": _response(rng, fact, r_style, r_value),
                    "h_w": h_w,
                    "h_l": h_l,
                    "category": fact["category"],
                }
            )
    rng.shuffle(rows)
    return rows
