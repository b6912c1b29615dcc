"""Realistic gpt-oss answers to CommonsenseQA-style questions, for the real-teacher-path fixtures.

Each entry is (analysis channel text, reasoning written in the content, final letter). The content
follows the course format ``<reasoning>...</reasoning>\\nFinal Answer: X``. The texts were written
to look like gpt-oss-120b's output on this task: short analysis notes ("We need to...", "Option
C: ..."), markdown, and the characters that real answers carry and that a byte-level BPE splits
into several tokens: emoji, arrows, math letters, accented words, typographic quotes.
"""

from __future__ import annotations

ANSWERS: list[tuple[str, str, str]] = [
    (
        "We need to pick who would be excited about a crab. Options: fish market, pet shop, fishmongers, "
        "intertidal zone, obesity. Fishmongers sell crabs, they'd be excited to get one. Answer C.",
        "A crab is a product that **fishmongers** sell 🦀, so a fresh crab means business for them.\n"
        "A fish market and a pet shop are places, not people; the intertidal zone is a habitat → not excited.\n"
        "So the best choice is C.",
        "C",
    ),
    (
        "The question: where would you put a plate after washing it? Options: cupboard, table, dishwasher, "
        "restaurant, flea market. After washing you store it: cupboard.",
        "After washing, a plate is dried and stored. The usual storage place in a kitchen is the cupboard 🍽️.\n"
        "The dishwasher is where it gets washed, not where it goes *after*.\n"
        "Therefore A.",
        "A",
    ),
    (
        "Sam wanted to see the Eiffel tower and eat croissants, where did he go? Paris, France. "
        "Options include 'France' likely. Choose B.",
        "The Eiffel Tower is in Paris, and croissants are typical of French cafés ☕🥐.\n"
        "So Sam travelled to France → option B.",
        "B",
    ),
    (
        "If x is a real number and x² ≥ 0 always... the question is about what a mathematician uses: "
        "a proof. Answer D.",
        "A mathematician shows that a statement holds for every 𝑥 ∈ ℝ with a **proof**, not with an experiment.\n"
        "For example, 𝑥² ≥ 0 for all 𝑥 ∈ ℝ follows from the ordering of the reals ∴ it needs a proof.\n"
        "So the answer is D.",
        "D",
    ),
    (
        "The person was feeling naïve about the résumé process. Where to get help: career counselor. Option E.",
        "Someone who feels naïve about writing a résumé needs advice from a professional.\n"
        "A career counselor (option E) helps with résumés and cover letters — the others don't.\n"
        "Hence E.",
        "E",
    ),
    (
        "What happens to water at 0 °C? It freezes. Options: boil, freeze, evaporate, expand, melt. Freeze = B.",
        "At 0 °C (32 °F) liquid water turns into ice ❄️.\n"
        "Boiling happens at 100 °C and evaporation is gradual, so they don't fit.\n"
        "Final choice: B.",
        "B",
    ),
    (
        "Where do you keep milk cold? Refrigerator. Option A.",
        "Milk spoils quickly at room temperature 🥛, so it is kept in the refrigerator (≈ 4 °C).\n"
        "A pantry or a cupboard is not cold enough.\n"
        "Answer: A.",
        "A",
    ),
    (
        "The child was playing with a ball in the yard; what might he break? A window. Option C.",
        "A ball thrown in a yard can hit the house ⚾ → the most fragile thing nearby is a window.\n"
        "Grass, a fence or a tree would not *break* from a ball.\n"
        "So C.",
        "C",
    ),
    (
        "Which is bigger, the sun or the moon? The question asks where the sun rises: east. D.",
        "The Sun rises in the east ☀️ and sets in the west, because the Earth rotates from west to east.\n"
        "So the answer is D (east).",
        "D",
    ),
    (
        "People go to a café to drink coffee. Options: café, bank, library, hospital, garage. A.",
        "Coffee is served in a café ☕ — that is the purpose of the place.\n"
        "A bank, a library, a hospital and a garage are not places one goes to *for* coffee.\n"
        "Thus A.",
        "A",
    ),
    (
        "Question about São Paulo: a large city in Brazil. Where is it? South America. Option B.",
        "São Paulo is the largest city of Brazil 🇧🇷, and Brazil is in South America.\n"
        "So the correct option is B.",
        "B",
    ),
    (
        "Zürich is in Switzerland; the question: where do Swiss bankers work? Bank. E.",
        "Bankers in Zürich work in banks 🏦; the city is a financial centre.\n"
        "Mountains and chocolate factories are distractors → E.",
        "E",
    ),
    (
        "What do you need to see in the dark? Light. Option C: flashlight.",
        "In the dark the eyes need a light source 🔦.\n"
        "A flashlight (C) gives light; sunglasses would make it worse.\n"
        "Therefore C.",
        "C",
    ),
    (
        "If you are hungry you would eat food. 'Eat' option D.",
        "Hunger is the body's signal that it needs food 🍎 → the natural action is to eat.\n"
        "Sleeping or running would not address hunger.\n"
        "So D.",
        "D",
    ),
    (
        "Where would you find a stapler? Office desk. Option A.",
        "A stapler is an office tool 📎 kept on or in a desk.\n"
        "A hardware store sells them, but one *finds* a stapler in use on an office desk.\n"
        "Answer A.",
        "A",
    ),
    (
        "Bees make honey in a hive. Options: hive, flower, garden, tree, meadow. A.",
        "Bees 🐝 produce and store honey in their hive.\n"
        "Flowers give nectar, which is then turned into honey inside the hive → A.",
        "A",
    ),
    (
        "Where does a fish live? Water, in the ocean or a lake. Options: lake = C.",
        "Fish 🐟 breathe through gills and need water.\n"
        "Of the options, only the lake (C) is a body of water.\n"
        "So the answer is C.",
        "C",
    ),
    (
        "The man was tired after work; what did he want? Rest. Option B.",
        "After a long day of work one feels tired 😴 and wants to rest.\n"
        "Going to a party or working more would not help → B.",
        "B",
    ),
    (
        "Math: the sum of angles in a triangle is 180°. The question asks what shape has three sides: triangle. D.",
        "A shape with three sides is a triangle △, whose angles add up to 180°.\n"
        "A square has four sides and a circle none, so D.",
        "D",
    ),
    (
        "Where do people keep books at home? Bookshelf. E.",
        "Books 📚 at home are usually kept on a bookshelf.\n"
        "A library is not *at home*, and a school is a different place.\n"
        "Hence E.",
        "E",
    ),
    (
        "The crab question again but asking where crabs live: intertidal zone or ocean. D.",
        "Crabs 🦀 live along the shore, in the intertidal zone, where tides cover and uncover the rocks.\n"
        "A fish market sells them but is not where they live → D.",
        "D",
    ),
    (
        "Temperature conversion: 100 °C → 212 °F. Question: what happens to water at 100 °C at sea level? Boils. A.",
        "At sea level water boils at 100 °C (212 °F) 🔥.\n"
        "So heating water to that temperature makes it boil → A.",
        "A",
    ),
    (
        "The café owner hired a barista. What does a barista make? Coffee drinks. C.",
        "A barista prepares coffee drinks — espresso, cappuccino, café au lait ☕.\n"
        "Bread is made by a baker, so C.",
        "C",
    ),
    (
        "Question: a résumé is needed for what? Applying for a job. Option B.",
        "A résumé lists one's experience and skills 📄 → it is sent when applying for a job.\n"
        "Therefore the answer is B.",
        "B",
    ),
    (
        "Where do you go to mail a letter? Post office. D.",
        "Letters ✉️ are sent through the post office, which sorts and delivers mail.\n"
        "A bank or a grocery store does not handle letters → D.",
        "D",
    ),
    (
        "The student studied hard to pass the exam. What was his goal? Good grades. A.",
        "Studying hard 📖 for an exam aims at passing it with good grades.\n"
        "So the goal is A.",
        "A",
    ),
    (
        "Set theory: if A ⊂ B and x ∈ A then x ∈ B. The question: what is a subset? Part of a set. E.",
        "If every element of A is in B, then A ⊆ B: A is a *part* of B.\n"
        "For instance x ∈ A ⇒ x ∈ B. This is what 'subset' means → E.",
        "E",
    ),
    (
        "Which animal is known for its long neck? Giraffe. Option C.",
        "The giraffe 🦒 has the longest neck of any animal, which helps it reach leaves high in trees.\n"
        "Hence C.",
        "C",
    ),
    (
        "Why do people wear coats in winter? To stay warm. B.",
        "In winter it is cold 🥶, and a coat keeps the body warm.\n"
        "So people wear coats to stay warm → B.",
        "B",
    ),
    (
        "Where would you buy fresh vegetables? Farmers' market or grocery store. Option A: farmers market.",
        "Fresh vegetables 🥕🥦 are sold directly by growers at a farmers' market.\n"
        "A hardware store or a bank does not sell them, so A.",
        "A",
    ),
    (
        "What is used to cut paper? Scissors. D.",
        "Paper is cut with scissors ✂️.\n"
        "A hammer or a spoon cannot cut paper cleanly → D.",
        "D",
    ),
    (
        "Where do planes take off? Airport. C.",
        "Planes ✈️ take off and land on runways at an airport.\n"
        "A train station or a harbour serves other vehicles → C.",
        "C",
    ),
    (
        "Probability: a fair die gives each face with p = 1/6. The question: what is a die used for? Games. B.",
        "A die 🎲 is thrown in board games; each face comes up with probability 1⁄6.\n"
        "So it is used for playing games → B.",
        "B",
    ),
    (
        "Where do you see stars? The night sky. Option E.",
        "Stars ⭐ are visible in the night sky when there are no clouds.\n"
        "During the day the Sun's light hides them → E.",
        "E",
    ),
    (
        "What does a thermometer measure? Temperature. A.",
        "A thermometer 🌡️ measures temperature, in °C or °F.\n"
        "Weight is measured by a scale and time by a clock, so A.",
        "A",
    ),
    (
        "Where is a piano often found? Concert hall. D.",
        "A grand piano 🎹 is typically found in a concert hall, where pianists perform.\n"
        "Therefore D.",
        "D",
    ),
    (
        "The naïve tourist lost his wallet. Where should he go? Police station. B.",
        "Someone who lost a wallet 👛 should report it at the police station.\n"
        "A museum or a beach cannot help him → B.",
        "B",
    ),
    (
        "The chef used a whisk to make crème brûlée. Where is he? Kitchen. C.",
        "A chef making crème brûlée 🍮 works in a kitchen, with a whisk and an oven.\n"
        "So the answer is C.",
        "C",
    ),
    (
        "Physics: speed v = d / t. The question: what measures speed in a car? Speedometer. A.",
        "Speed is distance over time: v = d ⁄ t. In a car it is shown by the speedometer 🚗.\n"
        "Hence A.",
        "A",
    ),
    (
        "Where do children learn to read? School. E.",
        "Children 🧒 learn to read at school, taught by teachers.\n"
        "A factory or an office is not a place of learning for children → E.",
        "E",
    ),
    (
        "If it rains you need an umbrella. D.",
        "Rain 🌧️ makes one wet; an umbrella keeps a person dry.\n"
        "Sunglasses or sandals don't help against rain → D.",
        "D",
    ),
    (
        "Logic: all humans are mortal, Socrates is human → Socrates is mortal. The question asks what kind of reasoning: deduction. C.",
        "From \u201call humans are mortal\u201d and \u201cSocrates is human\u201d it follows that Socrates is mortal: "
        "premises ⟹ conclusion.\n"
        "That is deductive reasoning → C.",
        "C",
    ),
    (
        "Where do you keep your car? Garage. B.",
        "A car 🚙 is parked in a garage to protect it from weather and theft.\n"
        "So B.",
        "B",
    ),
    (
        "What do plants need to grow? Sunlight and water. A.",
        "Plants 🌱 make food by photosynthesis: CO₂ + H₂O + light → sugar + O₂.\n"
        "So they need sunlight (and water) → A.",
        "A",
    ),
    (
        "Where would you go to watch a movie? Cinema / movie theater. E.",
        "Films 🎬 are shown in a movie theatre, on a big screen.\n"
        "A library lends DVDs, but one goes to the theatre to *watch* → E.",
        "E",
    ),
    (
        "What does a doctor use to listen to the heart? Stethoscope. D.",
        "A doctor 🩺 listens to the heart and lungs with a stethoscope.\n"
        "Therefore D.",
        "D",
    ),
    (
        "Where would you see a lion in a city? Zoo. C.",
        "Lions 🦁 live in the African savanna; in a city one sees them at the zoo.\n"
        "So C.",
        "C",
    ),
    (
        "A person who is très fatigué (French) wants to sleep. Where? Bed. A.",
        "Someone très fatigué — very tired — wants to sleep 🛏️, and one sleeps in a bed.\n"
        "Hence A.",
        "A",
    ),
    (
        "Sequence: 2, 4, 8, 16 → next 32. The question: what pattern is doubling? Exponential growth. B.",
        "Each term doubles: 2 → 4 → 8 → 16 → 32, i.e. aₙ = 2ⁿ.\n"
        "Doubling at each step is exponential growth → B.",
        "B",
    ),
    (
        "Where do you put dirty clothes? Laundry hamper. E.",
        "Dirty clothes 👕 go into the laundry hamper until they are washed.\n"
        "The closet is for clean ones → E.",
        "E",
    ),
    (
        "Why would someone go to a pharmacy? To buy medicine. C.",
        "A pharmacy 💊 sells medicine, often on a doctor's prescription.\n"
        "So the reason is C.",
        "C",
    ),
    (
        "Greek letters: α, β, γ are used in math. The question: what alphabet? Greek. D.",
        "The letters α, β, γ, δ, and π come from the Greek alphabet; mathematicians use them for angles and constants.\n"
        "Thus D.",
        "D",
    ),
    (
        "Where would you find a jellyfish? Ocean. B.",
        "Jellyfish 🪼 drift in the ocean, carried by currents.\n"
        "A desert or a forest has no sea water → B.",
        "B",
    ),
    (
        "Björk is from Iceland; the question: where is Reykjavík? Iceland. A.",
        "Reykjavík is the capital of Iceland 🇮🇸, Björk's home town.\n"
        "So A.",
        "A",
    ),
]
