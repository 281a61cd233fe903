"""The planner: the reasoner LLM that writes the story plan, and the bridge that turns it into DiT tokens.

Kept import-light (no torch here); import the module you need:

* ``tokens``: the AudioStory special tokens, id resolution, tokenizer builders (torch-free).
* ``prompt``: lead phrases, instruction and chat prompt (torch-free).
* ``layout``: serialise/parse the output layout, repairs, duration fitting (torch-free).
* ``constraints``: the decoding grammar and its ``LogitsProcessor``.
* ``decoding``: the fast KV-cache decoder and the ``generate`` reference path.
* ``reasoner``: ``build_llm``, ``apply_lora``, ``SamplingOptions``, ``Reasoner``, ``ReasonerOutput``.
* ``bridge``: ``Bridge`` (projectors + per-event fusion).
* ``script``: scripted plans (``ScriptProcessor``, ``demo_plan``) for tiny-random runs and tests.
* ``api``: ``Planner`` (plan → bridge tokens) and ``build_tiny_planner``.
"""
