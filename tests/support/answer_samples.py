"""Hand-written teacher answers in the shapes gpt-oss gives to the course prompt (no tests here).

These are not model outputs: they were written for the segmentation tests, after the course's one
real answer (``COURSE_ANSWER``, from the course report) and the markdown habits of gpt-oss
answers (bold option labels, bullet lists, a "final answer" said in prose before the marker, the
marker in bold, on its own line or glued to ``</reasoning>``). Each entry is
``(content, expected_sentence_count)`` under the rules of :mod:`dasd_utils.segment`.
"""

from __future__ import annotations

COURSE_ANSWER = (
    "<reasoning> The question asks for a “who” that would be excited about a crab. Among the options, "
    "only a living entity that could have a reaction to a crab is a person. The fish market, pet shop, "
    "and intertidal zone are places or environments, not entities that can be excited. “Obesity” is a "
    "condition, not a person. The only plausible answer is a fishmonger, who sells fish and seafood and "
    "would likely be interested in crabs as a product. Therefore, the most appropriate choice is C. "
    "</reasoning> Final Answer: C"
)

ANSWERS: list[tuple[str, int]] = [
    (COURSE_ANSWER, 7),
    (
        "<reasoning>\nThe question asks who would be excited about a crab.\n\n"
        "- **A. fish market** – a place, not a person.\n"
        "- **B. pet shop** – also a place.\n"
        "- **C. fishmongers** – people who sell seafood; a fresh crab is good stock.\n"
        "- **D. intertidal zone** – a habitat.\n"
        "- **E. obesity** – a condition.\n\n"
        "Only C names people. So the final answer is C.\n</reasoning>\nFinal Answer: C",
        9,
    ),
    (
        "<reasoning>\nWe need the place where you would find a crab in the wild.\n\n"
        "**A. Fish market**\nCrabs are sold there, but they are not found there naturally.\n\n"
        "**D. Intertidal zone**\nThe area between tides is where crabs live.\n\n"
        "The best answer is D.\n</reasoning>\n**Final Answer:** D",
        5,
    ),
    (
        "<reasoning>A scared crab usually hides or runs sideways. Options: A. bite, B. hide, C. sing, "
        "D. fly, E. swim. Hiding is the natural response, so the final answer is B.</reasoning>\n"
        "Final Answer: B",
        4,
    ),
    (
        "<reasoning>\n1. The question is about where people keep money.\n"
        "2. A bank is built for that.\n"
        "3. The other options (a pocket, a sock) are possible but less typical.\n"
        "Thus the answer is **C. bank**.\n</reasoning>\nFinal Answer: C",
        5,
    ),
    (
        "<reasoning>\nKey facts:\n* A violin is a string instrument.\n* It is played in an orchestra.\n\n"
        "Option **E. orchestra** fits best; the final answer should be E.\n</reasoning>\n\nFinal Answer: E",
        5,
    ),
    (
        "<reasoning>The phrase “take a seat” means to sit down. So the answer is A. Sitting is the action "
        "described, e.g. on a chair.</reasoning> Final Answer: A",
        4,
    ),
    (
        "<reasoning>\n**Step 1.** Identify the emotion: the person won a prize.\n"
        "**Step 2.** Winning usually makes people happy.\n"
        "Among the options, **B. happiness** matches.\n</reasoning>\nFinal Answer: **B**",
        4,
    ),
    (
        "<reasoning>\nThe correct choice:\n**C. Fishmongers**\n"
        "They handle crabs every day. The final answer is C.\n</reasoning>\nFinal Answer: C",
        4,
    ),
    (
        "<reasoning>\nA library lends books. It is quiet. The other places (a zoo, a stadium) are loud. "
        "So D.\n</reasoning>\nFinal Answer: D",
        5,
    ),
]
