"""Chat templates by name (Jinja, the format `tokenizer.apply_chat_template` takes).

Model configs name one of these (`model.chat_template`) so base models without a template of their
own, and the `tiny` test model, format conversations exactly like their instruct siblings.
`null` in the config keeps the tokenizer's own template.
"""

from __future__ import annotations

from alignment.registry import Registry

TEMPLATES: Registry[str] = Registry("chat template")

TEMPLATES.add(
    "chatml",
    "{% for m in messages %}<|im_start|>{{ m['role'] }}\n{{ m['content'] }}<|im_end|>\n{% endfor %}"
    "{% if add_generation_prompt %}<|im_start|>assistant\n{% endif %}",
)
TEMPLATES.add(
    "llama3",
    "{{ bos_token }}{% for m in messages %}<|start_header_id|>{{ m['role'] }}<|end_header_id|>\n\n"
    "{{ m['content'] | trim }}<|eot_id|>{% endfor %}"
    "{% if add_generation_prompt %}<|start_header_id|>assistant<|end_header_id|>\n\n{% endif %}",
)
# Llama-2-chat: the system prompt sits inside the first [INST] block.
TEMPLATES.add(
    "llama2",
    "{% if messages[0]['role'] == 'system' %}{% set sys = '<<SYS>>\n' + messages[0]['content'] + "
    "'\n<</SYS>>\n\n' %}{% set msgs = messages[1:] %}{% else %}{% set sys = '' %}"
    "{% set msgs = messages %}{% endif %}{% for m in msgs %}{% if m['role'] == 'user' %}"
    "{{ bos_token }}[INST] {% if loop.first %}{{ sys }}{% endif %}{{ m['content'] | trim }} [/INST]"
    "{% else %} {{ m['content'] | trim }} {{ eos_token }}{% endif %}{% endfor %}",
)
# Mistral-Instruct and Gemma have no system role: formatting merges the instruction into the
# first user turn before these templates see the messages (model.supports_system_role=false).
TEMPLATES.add(
    "mistral",
    "{{ bos_token }}{% for m in messages %}{% if m['role'] == 'user' %}"
    "[INST] {{ m['content'] | trim }} [/INST]{% else %}{{ m['content'] | trim }}{{ eos_token }}"
    "{% endif %}{% endfor %}",
)
TEMPLATES.add(
    "gemma",
    "{{ bos_token }}{% for m in messages %}{% set role = 'model' if m['role'] == 'assistant' "
    "else m['role'] %}<start_of_turn>{{ role }}\n{{ m['content'] | trim }}<end_of_turn>\n"
    "{% endfor %}{% if add_generation_prompt %}<start_of_turn>model\n{% endif %}",
)
TEMPLATES.add(
    "deepseek",
    "{{ bos_token }}{% for m in messages %}{% if m['role'] == 'system' %}{{ m['content'] }}\n\n"
    "{% elif m['role'] == 'user' %}User: {{ m['content'] }}\n\n{% else %}Assistant: "
    "{{ m['content'] }}{{ eos_token }}{% endif %}{% endfor %}"
    "{% if add_generation_prompt %}Assistant:{% endif %}",
)
