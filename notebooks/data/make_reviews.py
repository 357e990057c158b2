"""Writes reviews.csv: a few hundred product reviews for the DataFrame tutorial.

Deterministic (a fixed seed, hand-written fragments), so the notebook's outputs are stable:

    python notebooks/data/make_reviews.py

Columns: id, product, rating (1-5), text, date. A few reviews are empty (missing text) and a
few are written twice, as real exports have, to show NA handling and de-duplication.
"""

from __future__ import annotations

import csv
import random
from datetime import date, timedelta
from pathlib import Path

HERE = Path(__file__).resolve().parent
ROWS = 300
SEED = 20240605

PRODUCTS = {
    "AeroPress Kettle": ("kettle", ["boils water in under three minutes", "has a gooseneck spout that pours evenly",
                                    "keeps the temperature for half an hour", "has a handle that stays cool"]),
    "Nimbus Headset": ("headset", ["cancels the noise on the train", "lasts two days on one charge",
                                   "pairs with my laptop and my phone at once", "folds flat into the case"]),
    "Trail Backpack 30L": ("backpack", ["has a padded laptop sleeve", "survived a week of rain in the mountains",
                                        "spreads the weight well on long walks", "has pockets for everything"]),
    "Lumen Desk Lamp": ("lamp", ["dims smoothly to a warm light", "has a USB port to charge my phone",
                                "lights the whole desk without glare", "remembers the last brightness"]),
    "Verde Blender": ("blender", ["crushes ice for smoothies", "is easy to clean under the tap",
                                  "blends frozen fruit in seconds", "has a jar that does not leak"]),
}

OPENERS = {
    5: ["I love this {noun}.", "Excellent {noun}, I highly recommend it.", "The best {noun} I have owned.",
        "Fantastic purchase, I am delighted."],
    4: ["Good {noun} overall.", "Nice {noun}, I am pleased with it.", "Solid {noun} for the price.",
        "I like this {noun} a lot."],
    3: ["It is an okay {noun}.", "Average {noun}, nothing special.", "The {noun} does the job.",
        "Mixed feelings about this {noun}."],
    2: ["Disappointing {noun}.", "Not a great {noun}, sadly.", "I expected more from this {noun}.",
        "The {noun} has problems."],
    1: ["Terrible {noun}, I want a refund.", "Awful {noun}, it broke within a week.",
        "The worst {noun} I have bought.", "Useless {noun}, very frustrating."],
}

NEGATIVES = ["the lid broke after a month", "the battery died after two weeks", "it arrived late and dirty",
             "the strap is hard to adjust", "it is noisy at night", "support never answered my emails",
             "the cable is too short", "the button stopped working"]
CLOSERS = ["Delivery was fast.", "My partner uses it every day.", "Bought it as a gift.", "Would buy again.",
           "Packaging was minimal.", "Customer service was friendly.", "", ""]
NAMES = ["Alice Martin", "Bruno Costa", "Chen Wei", "Dara Okafor", "Elena Rossi", "Farid Haddad", "Greta Lind",
         "Hugo Silva", "Ines Moreau", "Jonas Berg"]


def review(rng: random.Random, product: str, rating: int) -> str:
    noun, features = PRODUCTS[product]
    parts = [rng.choice(OPENERS[rating]).format(noun=noun)]
    good = rng.choice(features)
    if rating >= 4:
        parts.append(f"It {good}.")
    elif rating == 3:
        parts.append(f"It {good}, but {rng.choice(NEGATIVES)}.")
    else:
        parts.append(f"Sadly {rng.choice(NEGATIVES)}.")
    if rng.random() < 0.25:
        parts.append(f"Signed, {rng.choice(NAMES)}, {rng.randint(19, 78)} years old.")
    closer = rng.choice(CLOSERS)
    if closer:
        parts.append(closer)
    return " ".join(parts)


def rows() -> list[dict]:
    rng = random.Random(SEED)
    out = []
    start = date(2024, 1, 1)
    for i in range(ROWS):
        product = rng.choice(list(PRODUCTS))
        rating = rng.choices([5, 4, 3, 2, 1], weights=[30, 30, 15, 12, 13])[0]
        text = review(rng, product, rating)
        if i % 47 == 13:
            text = ""  # an empty review: missing in the frame
        elif i % 29 == 7 and out:
            prev = out[rng.randrange(len(out))]  # posted twice
            product, rating, text = prev["product"], prev["rating"], prev["text"]
        out.append({"id": 1000 + i, "product": product, "rating": rating, "text": text,
                    "date": (start + timedelta(days=rng.randrange(160))).isoformat()})
    return out


def main() -> None:
    path = HERE / "reviews.csv"
    with path.open("w", newline="", encoding="utf-8") as f:
        w = csv.DictWriter(f, fieldnames=["id", "product", "rating", "text", "date"], lineterminator="\n")
        w.writeheader()
        w.writerows(rows())
    print(f"wrote {path} ({ROWS} reviews)")


if __name__ == "__main__":
    main()
