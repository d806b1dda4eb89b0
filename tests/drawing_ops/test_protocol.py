"""drawing_ops.protocol: finish reasons, the errors' reasons, the reflection rule, turn writing and
the prompt template."""

from __future__ import annotations

import json

import pytest

from drawing_ops import (Box, FinishReason, ImageInfo, Line, PromptTemplate, TemplateError, ToolFormatError,
                         ToolIndexError, ToolSchemaError, TooManyImages, parse_tool_calls, reflective_labels)
from drawing_ops.protocol import (DEFAULT_TEMPLATE, ProblemType, Role, SHAREGPT_ROLES, fill, format_answer_turn,
                                  format_tool_turn)


def test_finish_reasons_keep_the_reference_strings():
    assert [str(r) for r in FinishReason] == ["answer", "length", "budget", "max_turns", "ToolError", "ToolGenError",
                                              "IndexError", "TooManyImages"]
    assert FinishReason("ToolGenError") is FinishReason.TOOL_GEN_ERROR and FinishReason.ANSWER == "answer"
    assert not FinishReason.ANSWER.is_tool_failure and FinishReason.INDEX_ERROR.is_tool_failure


def test_each_tool_error_names_its_finish_reason():
    assert ToolFormatError.reason is FinishReason.TOOL_ERROR
    assert ToolSchemaError.reason is FinishReason.TOOL_GEN_ERROR
    assert ToolIndexError.reason is FinishReason.INDEX_ERROR
    assert TooManyImages.reason is FinishReason.TOO_MANY_IMAGES


def test_sharegpt_roles():
    assert SHAREGPT_ROLES["human"] is Role.USER and SHAREGPT_ROLES["gpt"] is Role.ASSISTANT
    assert str(Role.SYSTEM) == "system"


@pytest.mark.parametrize("steps, boxes_only, expected", [
    ([[Box(1, (1, 2, 3, 4), "a")], [Box(2, (1, 2, 3, 5), "a")]], False, {"a"}),         # redrawn, moved
    ([[Box(1, (1, 2, 3, 4), "a")], [Box(2, (1, 2, 3, 4), "a")]], False, set()),         # same geometry
    ([[Box(1, (1, 2, 3, 4), "a"), Box(1, (5, 6, 7, 8), "a")]], False, set()),           # one step only
    ([[Line(1, (0, 0), (5, 5), "p")], [Line(2, (0, 0), (6, 5), "p")]], False, {"p"}),   # lines count
    ([[Line(1, (0, 0), (5, 5), "p")], [Line(2, (0, 0), (6, 5), "p")]], True, set()),    # ...not for the reference's log
    ([[Box(1, (1, 2, 3, 4), "a")], [Line(2, (0, 0), (6, 5), "a")]], False, set()),      # another kind of item
    ([[Box(1, (1, 2, 3, 4), "a")], [], [Box(3, (9, 2, 3, 4), "a"), Box(3, (1, 2, 3, 4), "b")]], False, {"a"}),
])
def test_reflection_rule(steps, boxes_only, expected):
    assert reflective_labels(steps, boxes_only=boxes_only) == expected


def test_written_turns_parse_back():
    items = [Box(1, (10, 20, 30, 40), "cup"), Line(1, (1, 2), (3, 4), "path")]
    turn = parse_tool_calls(format_tool_turn("look", items), num_images=1)
    assert turn.errors == [] and turn.action == "Object Mapper" and list(turn.actions) == items
    assert parse_tool_calls(format_tool_turn("trace", items[1:])).action == "Path Tracer"
    answer = parse_tool_calls(format_answer_turn("done", "B"))
    assert answer.answer == "B" and answer.action == "Answer" and answer.think == "done"


def test_default_question_layout():
    text = DEFAULT_TEMPLATE.question_prompt(" Which is left? ", [ImageInfo(1, 448, 336), ImageInfo(2, 448, 336)],
                                            options=["A. cup", "B. pot"], problem_type=ProblemType.MULTIPLE_CHOICE)
    assert text.splitlines() == [
        "Image 1 (448x336 pixels): <image>", "Image 2 (448x336 pixels): <image>", "",
        "Question: Which is left?", "Options:", "A. cup", "B. pot",
        "Answer with the letter of the correct option.",
        "Think step by step, draw to check your reasoning, and critically inspect each drawing."]
    no_options = DEFAULT_TEMPLATE.question_prompt("Is the lamp left of the bed?", [ImageInfo(1, 448, 336)])
    assert "letter" not in no_options and "Question: Is the lamp left of the bed?" in no_options
    final = DEFAULT_TEMPLATE.feedback_prompt([ImageInfo(3, 10, 20)], final=True)
    assert final.startswith("Image 3 (10x20 pixels): <image>\n") and "no longer available" in final


def test_custom_template_fills_known_fields_only():
    template = PromptTemplate(system='Image 1 is {width}x{height}. Call [{"index": 1}]', image_line="<image> #{index}",
                              closing="", answer_instructions={})
    messages = template.prompt_messages("q?", [ImageInfo(1, 64, 32)], problem_type="numerical")
    assert messages == [{"role": "system", "content": 'Image 1 is 64x32. Call [{"index": 1}]'},
                        {"role": "user", "content": "<image> #1\n\nQuestion: q?"}]
    assert fill("{a} {b} {c}", a=1, b="x") == "1 x {c}"


# -- prompt templates as data -------------------------------------------------------------------
REFERENCE_STYLE = {   # the reference's layout (in our words): image 1's size in the system prompt, a lone
    "system": "Draw to reason. Image 1 spans (0, 0) to ({width}, {height}).",   # image gets its index only
    "single_image_line": "{image}\nThis is image {index}.",
    "image_line": "{image}This is image {index} (width: {width}, height: {height}).",
    "question_turn": "{images}\n### Question:\n{question}\n{options}\n{answer_instruction}",
    "question": "{question}",
    "answer_instructions": {"multiple choice": "Give the letter."},
}


def test_a_template_loads_from_json_and_toml_alike(tmp_path):
    (tmp_path / "t.json").write_text(json.dumps(REFERENCE_STYLE))
    toml = "\n".join(f"{k} = {json.dumps(v)}" for k, v in REFERENCE_STYLE.items() if isinstance(v, str))
    toml += '\n[answer_instructions]\n"multiple choice" = "Give the letter."\n'
    (tmp_path / "t.toml").write_text(toml)
    a, b = PromptTemplate.from_file(tmp_path / "t.json"), PromptTemplate.from_file(tmp_path / "t.toml")
    assert a == b == PromptTemplate(**REFERENCE_STYLE)
    assert a.feedback == DEFAULT_TEMPLATE.feedback                      # a missing key keeps our default
    assert PromptTemplate.from_dict(a.to_dict()) == a


def test_single_and_several_images_and_optional_lines():
    t = PromptTemplate(**REFERENCE_STYLE)
    one = t.prompt_messages("Which way?", [ImageInfo(1, 588, 588)], problem_type="free-form")
    assert one[0]["content"] == "Draw to reason. Image 1 spans (0, 0) to (588, 588)."
    # no options and no instruction for free-form: those lines are left out
    assert one[1]["content"] == "<image>\nThis is image 1.\n### Question:\nWhich way?"
    two = t.question_prompt("Same object?", [ImageInfo(1, 448, 336), ImageInfo(2, 224, 168)], options=["A. yes", "B. no"])
    assert two == ("<image>This is image 1 (width: 448, height: 336).\n<image>This is image 2 (width: 224, height: 168)."
                   "\n### Question:\nSame object?\nOptions:\nA. yes\nB. no\nGive the letter.")
    fb = PromptTemplate(feedback="Image {index} is {width}x{height}; go on.", feedback_turn="{images}{message}",
                        single_image_line="{image}")
    assert fb.feedback_prompt([ImageInfo(4, 10, 20)], final=False) == "<image>Image 4 is 10x20; go on."


@pytest.mark.parametrize("data, needle", [
    ({"sytem": "x"}, "unknown key(s) ['sytem']"),
    ({"question": "Q: {quesiton}"}, "unknown field(s) {quesiton}"),
    ({"system": "image {index}"}, "it can use: {height}, {num_images}, {width}"),
    ({"closing": 3}, "must be a string"),
    ({"answer_instructions": ["a"]}, "answer_instructions must map"),
    (["system"], "table/object"),
])
def test_bad_templates_say_what_to_change(data, needle):
    with pytest.raises(TemplateError) as err:
        PromptTemplate.from_dict(data)
    assert needle in str(err.value)


def test_bad_template_files(tmp_path):
    for name, text, needle in [("t.yaml", "a: 1", ".json or .toml"), ("t.json", "{", "does not parse as JSON"),
                               ("t.toml", "x = ", "does not parse as TOML"), ("missing.json", None, "cannot read")]:
        if text is not None:
            (tmp_path / name).write_text(text)
        with pytest.raises(TemplateError, match=needle.replace(".", r"\.")):
            PromptTemplate.from_file(tmp_path / name)
