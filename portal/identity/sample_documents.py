"""The photographed documents the MRZ bench measures and the tests pin (issue 17): TD1
cards and TD3 passports alternately, names that have broken readers, several issuing
states, each side photographed as a phone would (camera.py). An (index, seed) pair
gives the same document and the same photographs again, so a bench failure becomes a
test."""

from __future__ import annotations

import datetime as dt
import random

from portal.identity import camera, portraits, specimen
from portal.identity.mrz import DocumentFormat

# Apostrophes, hyphens, particles, umlauts and the ICAO digraphs, several given names,
# names long enough to be truncated in a TD1, surnames of one or two letters.
SURNAMES = ["Martin", "Dupont-Lefèvre", "Müller", "van der Berg", "D'Angelo", "Kowalczyk",
            "García Pérez", "Østergård", "Nguyen", "O'Neill", "Kirk", "Papadopoulos",
            "Schäfer", "Łukasiewicz", "Björk", "Fernández de Córdoba", "Ó Súilleabháin",
            "Wolfeschlegelsteinhausen", "Le", "Ng", "Gökçe", "Çelik", "Nowak-Jeziorańska"]
GIVEN = ["Léa", "Hélène Marie", "Jürgen Karl", "Kees", "Maria Grazia", "Kazimierz", "José",
         "Søren", "Anh", "Siobhán", "Kirk", "Ioannis", "Zoë", "Jan Kacper", "Ásta", "Inés",
         "Jean-Baptiste Marie Joseph", "Zoltán", "Åse", "Ignacy Jan Paweł", "Bo"]
COUNTRIES = ["FRA", "D", "NLD", "ITA", "POL", "ESP", "DNK", "BEL", "IRL", "SWE", "AUT",
             "GRC", "PRT", "FIN", "CZE", "LUX", "HUN", "ROU", "GBR", "CHE", "NOR", "USA"]


def seeds(count: int, seed: int) -> list[tuple[int, int]]:
    """The (index, seed) pairs of a measured set; a longer set starts with a shorter."""
    draw = random.Random(seed)
    return [(index, draw.randrange(1 << 30)) for index in range(count)]


def photographed(index: int, seed: int
                 ) -> tuple[specimen.Specimen, dict[specimen.Side, bytes]]:
    """Document `index` of a set (odd: a TD1 card, even: a TD3 passport), drawn from
    `seed`, and each of its sides photographed (JPEG bytes)."""
    rng = random.Random(seed)
    fmt = DocumentFormat.TD1 if index % 2 else DocumentFormat.TD3
    country = rng.choice(COUNTRIES)
    if fmt is DocumentFormat.TD1 and country in ("GBR", "USA"):
        country = "FRA"  # no national ID card
    born = dt.date(1940, 1, 1) + dt.timedelta(days=rng.randrange(365 * 65))
    data = specimen.make_data(fmt, country=country, surname=rng.choice(SURNAMES),
                              given_names=rng.choice(GIVEN), sex=rng.choice("FMX"),
                              birth_date=born, rng=rng)
    doc = specimen.render(data, rng=rng,
                          portrait=portraits.sample(rng.choice(sorted(portraits.SAMPLES))))
    photos = {side: camera.photograph(png, camera.random_shot(rng), rng)
              for side, png in doc.images.items()}
    return doc, photos
