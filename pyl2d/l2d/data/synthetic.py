"""A synthetic recommendation data set with learnable structure, the default for ``pyl2d demo``.

Items belong to genres whose words appear in their titles ("Velvet Midnight Blues, Vol. 2"),
some come in numbered series, and popularity is Zipf-like. Users have a latent taste (a few
favourite genres) and move through the catalog like people do: they finish a series, stay in
the genre of the last item, or jump to another favourite genre. A model that reads the
history can therefore beat popularity by a wide margin, and titles are readable in demos.
"""
from __future__ import annotations

import random

from pyl2d.l2d.data.folders import Dataset
from pyl2d.l2d.data.records import Catalog, Sample

_GENRES = {
    "Blues": (["Velvet", "Smoky", "Muddy", "Lonesome", "Crossroad", "Delta"], ["Midnight", "Train", "River", "Whiskey", "Porch", "Highway"]),
    "Jazz": (["Blue", "Cool", "Modal", "Bebop", "Swinging", "Late"], ["Trumpet", "Quartet", "Session", "Standards", "Lounge", "Saxophone"]),
    "Metal": (["Iron", "Burning", "Black", "Savage", "Thunder", "Steel"], ["Fortress", "Hammer", "Inferno", "Legion", "Skull", "Storm"]),
    "Folk": (["Gentle", "Wandering", "Green", "Old", "Rolling", "Quiet"], ["Hills", "Ballads", "Meadow", "Fiddle", "Harvest", "Lantern"]),
    "Electronic": (["Neon", "Digital", "Pulse", "Synthetic", "Laser", "Binary"], ["Dreams", "Circuits", "Grid", "Machine", "Frequency", "Signal"]),
    "Classical": (["Grand", "Royal", "Baroque", "Romantic", "Solemn", "Golden"], ["Symphony", "Sonata", "Concerto", "Requiem", "Overture", "Nocturne"]),
    "Country": (["Dusty", "Honky", "Wild", "Southern", "Prairie", "Lucky"], ["Boots", "Rodeo", "Pickup", "Saloon", "Cowboy", "Canyon"]),
    "Reggae": (["Island", "Sunny", "Roots", "Easy", "Tropical", "Irie"], ["Riddim", "Sunshine", "Dub", "Vibes", "Harbour", "Breeze"]),
}


_SYLLABLES = ("ka", "lo", "mi", "ren", "do", "sa", "vi", "tor", "el", "na", "bri", "zu", "quin", "ha", "mo", "xe")


def _artist(rng: random.Random) -> str:
    """An invented artist name ("Torvina Kel"): rare words a tiny model cannot just spell."""
    def word(parts: int) -> str:
        return "".join(rng.choice(_SYLLABLES) for _ in range(parts)).capitalize()
    return f"{word(rng.randint(2, 3))} {word(rng.randint(1, 2))}"


def _catalog(rng: random.Random, n_items: int, series_share: float, artist_share: float,
             popularity_exponent: float) -> tuple[list[str], list[str], list[float], dict[int, int]]:
    """Titles, genre per item, popularity weight per item, and item -> next volume in its series."""
    genres = list(_GENRES)
    titles: list[str] = []
    genre_of: list[str] = []
    next_volume: dict[int, int] = {}
    used: set[str] = set()
    while len(titles) < n_items:
        genre = genres[len(titles) % len(genres)]
        adjectives, nouns = _GENRES[genre]
        base = f"{rng.choice(adjectives)} {rng.choice(nouns)} {genre}"
        if rng.random() < artist_share:
            base = f"{_artist(rng)}: {base}"
        if rng.random() < series_share and len(titles) + 3 <= n_items:
            volumes = [f"{base}, Vol. {v}" for v in (1, 2, 3)]
            if any(v in used for v in volumes):
                continue
            first = len(titles)
            for v, title in enumerate(volumes):
                titles.append(title)
                genre_of.append(genre)
                used.add(title)
                if v < 2:
                    next_volume[first + v] = first + v + 1
        else:
            # Repeats of a plain title are allowed (as on real data, e.g. "Greatest Hits").
            titles.append(base)
            genre_of.append(genre)
            used.add(base)
    ranks = list(range(1, n_items + 1))
    rng.shuffle(ranks)
    popularity = [1.0 / r ** popularity_exponent for r in ranks]
    return titles, genre_of, popularity, next_volume


def make_synthetic(n_items: int = 1000, n_users: int = 600, min_len: int = 5, max_len: int = 12,
                   max_history: int = 10, seed: int = 0, series_share: float = 0.3, artist_share: float = 0.7,
                   popularity_exponent: float = 0.8) -> Dataset:
    """A :class:`Dataset` whose ``train`` holds every prefix of each user's sequence but the
    last, and whose ``test`` holds each user's last item (the leave-one-out protocol).

    ``artist_share`` of the items (and their series) get an invented artist name in front of
    the title; ``popularity_exponent`` is the Zipf exponent of item popularity (larger: a
    longer tail of items rarely or never seen as a training target).

    The defaults make it like the real Amazon sets where it matters to the methods compared:
    more items than a tiny model can learn to spell (about 1.7 users per item; titles with
    rare invented names), a few percent of test targets never seen as a training target, and
    plain titles shared by several items. With the 400-item catalog of short genre titles
    used before, generation was easy and the demo's ranking of methods was a coin toss."""
    if n_items < 20:
        raise ValueError(f"n_items must be at least 20, got {n_items}")
    if not 2 <= min_len <= max_len <= n_items:
        raise ValueError(f"need 2 <= min_len <= max_len; <= n_items; got {min_len}, {max_len}")
    rng = random.Random(seed)
    if not (0.0 <= series_share <= 1.0 and 0.0 <= artist_share <= 1.0 and popularity_exponent >= 0.0):
        raise ValueError(f"need series_share and artist_share in [0, 1] and popularity_exponent >= 0; got "
                         f"{series_share}, {artist_share}, {popularity_exponent}")
    titles, genre_of, popularity, next_volume = _catalog(rng, n_items, series_share, artist_share,
                                                         popularity_exponent)
    genres = list(_GENRES)
    by_genre = {g: [i for i in range(n_items) if genre_of[i] == g] for g in genres}
    train: list[Sample] = []
    test: list[Sample] = []
    for _ in range(n_users):
        favourites = rng.sample(genres, rng.choice((1, 2, 2, 3)))
        length = rng.randint(min_len, max_len)
        seq: list[int] = []
        attempts = 0
        while len(seq) < length:
            last = seq[-1] if seq else None
            attempts += 1
            if attempts > 50 * length:  # small catalogs: the favourite genres are used up
                candidate = rng.choice([i for i in range(n_items) if i not in seq])
            elif last is not None and last in next_volume and rng.random() < 0.7:
                candidate = next_volume[last]
            else:
                stay = last is not None and rng.random() < 0.6
                genre = genre_of[last] if stay else rng.choice(favourites)
                pool = by_genre[genre]
                candidate = rng.choices(pool, weights=[popularity[i] for i in pool])[0]
            if candidate not in seq:
                seq.append(candidate)
        for end in range(1, len(seq)):
            hist = seq[max(0, end - max_history):end]
            sample = Sample(tuple(hist), tuple(titles[i] for i in hist), seq[end], titles[seq[end]])
            (test if end == len(seq) - 1 else train).append(sample)
    return Dataset(Catalog(titles), train, test, name="synthetic")
