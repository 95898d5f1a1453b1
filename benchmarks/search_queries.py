"""Search queries for the API benchmarks: 50 base queries x 40 variants, 2,000 distinct texts,
so that a run of "new queries" never hits the API's query-vector cache."""

from __future__ import annotations

from urllib.parse import urlencode

QUERIES = (
    "scary zombie movies",
    "romantic comedy in paris",
    "space adventure with aliens",
    "animated film for kids",
    "heist movie with a twist",
    "world war two drama",
    "superhero origin story",
    "haunted house horror",
    "courtroom thriller",
    "coming of age high school",
    "serial killer detective",
    "musical about dancers",
    "time travel paradox",
    "post apocalyptic survival",
    "mafia family crime",
    "buddy cop action comedy",
    "pirates on the high seas",
    "dragons and wizards",
    "robot artificial intelligence",
    "boxing underdog sports",
    "vampire love story",
    "spy espionage cold war",
    "road trip friendship",
    "disaster movie earthquake",
    "western gunslinger revenge",
    "martial arts kung fu",
    "submarine naval battle",
    "political conspiracy",
    "dinosaurs theme park",
    "talking animals cartoon",
    "prison escape",
    "alien invasion earth",
    "shark attack ocean",
    "fairy tale princess",
    "zombie apocalypse comedy",
    "psychological mind bending thriller",
    "biography of a musician",
    "teen slasher summer camp",
    "samurai japan",
    "christmas family movie",
    "mountain climbing survival",
    "bank robbery gone wrong",
    "ghost story in a hotel",
    "cyberpunk hackers",
    "medieval knights battle",
    "stand up comedy",
    "jazz age new york",
    "car chase racing",
    "documentary about nature",
    "monster in the lake",
)
VARIANTS = (
    "",
    "film",
    "movie",
    "classic",
    "new",
    "best",
    "old",
    "funny",
    "dark",
    "british",
    "american",
    "french",
    "cult",
    "epic",
    "short",
    "long",
    "award winning",
    "indie",
    "remake",
    "sequel",
    "story",
    "tale",
    "picture",
    "flick",
    "feature",
    "drama",
    "series",
    "original",
    "modern",
    "vintage",
    "famous",
    "obscure",
    "great",
    "good",
    "strange",
    "quiet",
    "loud",
    "sad",
    "happy",
    "weird",
)


def search_paths(users: list[str], distinct: bool) -> tuple[str, ...]:
    """Return search paths: every query different (base query x variant) or one repeated."""
    if not distinct:
        return (f"/v1/search?{urlencode({'q': QUERIES[0], 'n': 10})}",)
    paths = []
    for v, variant in enumerate(VARIANTS):
        for q, query in enumerate(QUERIES):
            text = f"{query} {variant}".strip()
            user = users[(v * len(QUERIES) + q) % len(users)]
            paths.append(f"/v1/search?{urlencode({'q': text, 'user_id': user, 'n': 10})}")
    return tuple(paths)
