"""A small MovieLens-format data set with real titles, for the API tests.

Four taste groups of users (horror, animation, comedy, drama) rate most films of their group
highly and a few others poorly. User 1 is a horror fan who has seen three zombie films; the
search tests rely on that. Everything is fixed (no randomness): the same files every run.
"""

from __future__ import annotations

ZOMBIE = {
    1794: ("Dawn of the Dead (1978)", "Action|Drama|Horror"),
    8874: ("Shaun of the Dead (2004)", "Comedy|Horror"),
    6502: ("28 Days Later (2002)", "Action|Horror|Sci-Fi"),
    1130: ("Night of the Living Dead (1968)", "Horror|Sci-Fi|Thriller"),
    71535: ("Zombieland (2009)", "Action|Comedy|Horror"),
    103249: ("World War Z (2013)", "Action|Drama|Horror|Sci-Fi|Thriller"),
    99117: ("Warm Bodies (2013)", "Comedy|Horror|Romance"),
}
HORROR = {
    1258: ("Shining, The (1980)", "Horror"),
    1997: ("Exorcist, The (1973)", "Horror|Mystery"),
    1219: ("Psycho (1960)", "Crime|Horror"),
    1214: ("Alien (1979)", "Horror|Sci-Fi"),
    2710: ("Blair Witch Project, The (1999)", "Drama|Horror|Thriller"),
    8957: ("Saw (2004)", "Horror|Mystery|Thriller"),
}
ANIMATION = {
    1: ("Toy Story (1995)", "Adventure|Animation|Children|Comedy|Fantasy"),
    3114: ("Toy Story 2 (1999)", "Adventure|Animation|Children|Comedy|Fantasy"),
    6377: ("Finding Nemo (2003)", "Adventure|Animation|Children|Comedy"),
    4306: ("Shrek (2001)", "Adventure|Animation|Children|Comedy|Fantasy|Romance"),
    2355: ("Bug's Life, A (1998)", "Adventure|Animation|Children|Comedy"),
    588: ("Aladdin (1992)", "Adventure|Animation|Children|Comedy|Musical"),
    364: ("Lion King, The (1994)", "Adventure|Animation|Children|Drama|Musical|IMAX"),
    8961: ("Incredibles, The (2004)", "Action|Adventure|Animation|Children|Comedy"),
    60069: ("WALL·E (2008)", "Adventure|Animation|Children|Romance|Sci-Fi"),
    68954: ("Up (2009)", "Adventure|Animation|Children|Drama"),
}
COMEDY = {
    1265: ("Groundhog Day (1993)", "Comedy|Fantasy|Romance"),
    1136: ("Monty Python and the Holy Grail (1975)", "Adventure|Comedy|Fantasy"),
    2706: ("American Pie (1999)", "Comedy|Romance"),
    1923: ("There's Something About Mary (1998)", "Comedy|Romance"),
    2502: ("Office Space (1999)", "Comedy|Crime"),
    1732: ("Big Lebowski, The (1998)", "Comedy|Crime"),
    2791: ("Airplane! (1980)", "Comedy"),
}
DRAMA = {
    318: ("Shawshank Redemption, The (1994)", "Crime|Drama"),
    858: ("Godfather, The (1972)", "Crime|Drama"),
    912: ("Casablanca (1942)", "Drama|Romance"),
    17: ("Sense and Sensibility (1995)", "Drama|Romance"),
    527: ("Schindler's List (1993)", "Drama|War"),
    356: ("Forrest Gump (1994)", "Comedy|Drama|Romance|War"),
    1704: ("Good Will Hunting (1997)", "Drama|Romance"),
    2324: ("Life Is Beautiful (La Vita è bella) (1997)", "Comedy|Drama|Romance|War"),
}
MARKUP = {  # nobody rated it; its title tests that pages show text as text
    424243: (
        '<img src=x onerror="document.title=1"> Tax & <b>Audit</b> Ledger (2001)',
        "Documentary",
    ),
}
GROUPS = (
    (range(1, 9), {**ZOMBIE, **HORROR}),
    (range(9, 17), ANIMATION),
    (range(17, 24), COMEDY),
    (range(24, 31), DRAMA),
)
MOVIES = {**ZOMBIE, **HORROR, **ANIMATION, **COMEDY, **DRAMA, **MARKUP}
FAN_SEEN_ZOMBIES = (1794, 8874, 71535)  # user 1 has seen these
FAN = 1
NEW_MOVIE = (152077, "Train to Busan (2016)", "Action|Horror|Thriller")
T0 = 1_600_000_000


def movies() -> list[tuple]:
    """Return the catalogue rows (movieId, title, genres)."""
    return [(item_id, title, genres) for item_id, (title, genres) in MOVIES.items()]


def ratings() -> list[tuple]:
    """Return the rating rows (userId, movieId, rating, timestamp), fixed for every run.

    A user first rates two films of the next group with 2.0, then the films of the own group
    at positions where (position + user) % 4 != 0 with 4.0 or 5.0 (so the held-out last
    rating is a liked film). User 1 rates exactly the three zombie films in FAN_SEEN_ZOMBIES
    plus the non-zombie horror films.
    """
    rows: list[tuple] = []
    for number, (users, group) in enumerate(GROUPS):
        ids = list(group)
        others = list(GROUPS[(number + 1) % len(GROUPS)][1])
        for user in users:
            if user == FAN:
                liked = [*FAN_SEEN_ZOMBIES, *HORROR]
            else:
                liked = [i for pos, i in enumerate(ids) if (pos + user) % 4 != 0]
            disliked = [others[user % len(others)], others[(user + 3) % len(others)]]
            for step, item in enumerate(disliked):
                rows.append((user, item, 2.0, T0 + user * 100 + step))
            for step, item in enumerate(liked, start=len(disliked)):
                rows.append((user, item, 5.0 if (step + user) % 3 else 4.0, T0 + user * 100 + step))
    return rows
