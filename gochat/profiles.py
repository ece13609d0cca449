"""Profile pictures: the emoji shown before a user's name.

Emoji rather than ASCII art because every terminal that can run nc renders
them in one or two cells, and a name plus picture must fit on one line.
"""

from __future__ import annotations

DEFAULT_PICTURE = "🙂"

PICTURES: dict[str, str] = {
    "smile": "🙂",
    "grin": "😀",
    "cool": "😎",
    "nerd": "🤓",
    "wink": "😉",
    "laugh": "😂",
    "think": "🤔",
    "sleepy": "😴",
    "ghost": "👻",
    "alien": "👽",
    "robot": "🤖",
    "skull": "💀",
    "clown": "🤡",
    "ninja": "🥷",
    "wizard": "🧙",
    "vampire": "🧛",
    "zombie": "🧟",
    "astronaut": "🧑‍🚀",
    "hacker": "🧑‍💻",
    "detective": "🕵",
    "cat": "🐱",
    "dog": "🐶",
    "fox": "🦊",
    "bear": "🐻",
    "panda": "🐼",
    "koala": "🐨",
    "tiger": "🐯",
    "lion": "🦁",
    "frog": "🐸",
    "monkey": "🐵",
    "penguin": "🐧",
    "owl": "🦉",
    "unicorn": "🦄",
    "dragon": "🐉",
    "octopus": "🐙",
    "shark": "🦈",
    "whale": "🐳",
    "turtle": "🐢",
    "snake": "🐍",
    "bee": "🐝",
    "crab": "🦀",
    "gopher": "🐹",
    "rocket": "🚀",
    "fire": "🔥",
    "star": "⭐",
    "moon": "🌙",
    "sun": "🌞",
    "rainbow": "🌈",
    "lightning": "⚡",
    "snowflake": "❄",
    "cactus": "🌵",
    "mushroom": "🍄",
    "pizza": "🍕",
    "coffee": "☕",
    "taco": "🌮",
    "donut": "🍩",
    "guitar": "🎸",
    "game": "🎮",
    "dice": "🎲",
    "crown": "👑",
    "gem": "💎",
    "key": "🔑",
    "bomb": "💣",
    "heart": "❤",
}


def lookup(name: str) -> str | None:
    """The picture for `name` (case-insensitive), or None if there is none."""
    return PICTURES.get(name.strip().lower())
