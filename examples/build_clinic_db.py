#!/usr/bin/env python3
"""Build the bundled example database ``clinic.sqlite`` (a small veterinary clinic).

Usage::

    python examples/build_clinic_db.py [--out PATH]

The build is fully deterministic: all data comes from the hand-written lists
below, combined by a fixed-seed RNG, and no wall-clock value is ever used.
"Today" for the data set is the fixed ``REFERENCE_DATE``: appointments before it
are completed / cancelled / no-show, appointments after it are scheduled.
Running the script twice produces byte-identical files.

The database is written to a temporary file next to the target and moved into
place with ``os.replace``, so a failed build never leaves a half-written file.
"""

from __future__ import annotations

import argparse
import datetime as dt
import os
import random
import sqlite3
import sys
from pathlib import Path

SEED = 20261123
REFERENCE_DATE = dt.date(2025, 11, 23)  # a Sunday: the clinic is closed, so no "today" appointments
FIRST_DAY = dt.date(2025, 1, 1)
LAST_DAY = dt.date(2026, 12, 31)

# public holidays on which the clinic is closed (it is also closed on Sundays)
CLOSED_DAYS = {
    dt.date(2025, 1, 1), dt.date(2025, 5, 26), dt.date(2025, 7, 4), dt.date(2025, 9, 1),
    dt.date(2025, 11, 27), dt.date(2025, 12, 25), dt.date(2026, 1, 1), dt.date(2026, 5, 25),
    dt.date(2026, 7, 3), dt.date(2026, 9, 7), dt.date(2026, 11, 26), dt.date(2026, 12, 25),
}

N_OWNERS = 60
N_PETS = 100
N_PAST_APPOINTMENTS = 160
N_FUTURE_APPOINTMENTS = 40

SCHEMA = """
CREATE TABLE owners (
    owner_id   INTEGER PRIMARY KEY,
    first_name TEXT NOT NULL,
    last_name  TEXT NOT NULL,
    email      TEXT UNIQUE,
    phone      TEXT,
    city       TEXT NOT NULL,
    joined_on  DATE NOT NULL
);

CREATE TABLE vets (
    vet_id    INTEGER PRIMARY KEY,
    full_name TEXT NOT NULL,
    specialty TEXT,
    hired_on  DATE NOT NULL,
    is_active INTEGER NOT NULL DEFAULT 1
);

CREATE TABLE pets (
    pet_id     INTEGER PRIMARY KEY,
    owner_id   INTEGER NOT NULL REFERENCES owners(owner_id),
    name       TEXT NOT NULL,
    species    TEXT NOT NULL,
    breed      TEXT,
    birth_date DATE,
    weight_kg  REAL,
    microchip  TEXT
);

CREATE TABLE appointments (
    appointment_id INTEGER PRIMARY KEY,
    pet_id         INTEGER NOT NULL REFERENCES pets(pet_id),
    vet_id         INTEGER NOT NULL REFERENCES vets(vet_id),
    scheduled_at   DATETIME NOT NULL,
    reason         TEXT NOT NULL,
    status         TEXT NOT NULL CHECK (status IN ('scheduled','completed','cancelled','no_show')),
    notes          TEXT
);

CREATE TABLE treatments (
    treatment_id   INTEGER PRIMARY KEY,
    appointment_id INTEGER NOT NULL REFERENCES appointments(appointment_id),
    description    TEXT NOT NULL,
    cost           NUMERIC(8,2) NOT NULL,
    quantity       INTEGER NOT NULL DEFAULT 1
);

CREATE TABLE invoices (
    invoice_id     INTEGER PRIMARY KEY,
    owner_id       INTEGER NOT NULL REFERENCES owners(owner_id),
    appointment_id INTEGER REFERENCES appointments(appointment_id),
    issued_on      DATE NOT NULL,
    amount         REAL NOT NULL,
    paid_on        DATE
);

CREATE INDEX idx_pets_owner ON pets(owner_id);
CREATE INDEX idx_appointments_pet ON appointments(pet_id);
CREATE INDEX idx_appointments_vet ON appointments(vet_id);
CREATE INDEX idx_treatments_appointment ON treatments(appointment_id);
CREATE INDEX idx_invoices_owner ON invoices(owner_id);
"""

TABLES = ["owners", "vets", "pets", "appointments", "treatments", "invoices"]

# --------------------------------------------------------------------------
# Hand-written source data
# --------------------------------------------------------------------------

FIRST_NAMES = [
    "Emma", "Liam", "Olivia", "Noah", "Ava", "Ethan", "Sophia", "Mason",
    "Isabella", "Lucas", "Mia", "Oliver", "Charlotte", "Elijah", "Amelia",
    "James", "Harper", "Benjamin", "Evelyn", "Henry", "Abigail", "Samuel",
    "Grace", "Daniel", "Chloe", "Mateo", "Zoe", "Aiden", "Nora", "Leo",
    "Hannah", "Jack", "Aaliyah", "Wyatt", "Priya", "Kenji", "Fatima",
    "Diego", "Ingrid", "Tomas", "Mei", "Rafael", "Siobhan", "Arjun",
    "Lucia", "Owen", "Naomi", "Caleb", "Julia", "Sean",
]

# A short list on purpose: several owners end up sharing a last name.
LAST_NAMES = [
    "Smith", "Johnson", "Garcia", "Nguyen", "Brown", "Miller", "Davis",
    "Martinez", "Wilson", "Anderson", "Taylor", "Thomas", "Moore", "Lee",
    "Patel", "Kim", "O'Connor", "Schmidt", "Rossi", "Kowalski", "Hernandez",
    "Walker", "Young", "Fischer", "Murphy", "Larsen", "Tanaka", "Okafor",
    "Garcia-Lopez", "Bennett",
]

# (city, weight) - a veterinary clinic serving the Portland, Oregon metro area.
CITIES = [
    ("Portland", 20), ("Beaverton", 9), ("Hillsboro", 7), ("Lake Oswego", 6),
    ("Tigard", 6), ("Gresham", 5), ("Milwaukie", 4), ("West Linn", 3),
    ("Tualatin", 3), ("Vancouver", 2),
]
AREA_CODES = {"Vancouver": "360"}  # everyone else: 503 / 971
EMAIL_DOMAINS = ["example.com", "example.net", "example.org", "mail.example.com"]

# id, full_name, specialty, hired_on, is_active, left_on (internal only: no appointments after it)
VETS = [
    (1, "Amara Okafor", "General Practice", dt.date(2012, 6, 4), 1, None),
    (2, "Daniel Reyes", "Surgery", dt.date(2015, 2, 16), 1, None),
    (3, "Hannah Lindqvist", "Exotic Animals", dt.date(2018, 9, 10), 1, None),
    (4, "Marcus Bell", "Dentistry", dt.date(2016, 4, 25), 1, None),
    (5, "Priya Raman", "Internal Medicine", dt.date(2019, 1, 7), 1, None),
    (6, "Sofia Marchetti", "Dermatology", dt.date(2021, 8, 2), 1, None),
    (7, "Thomas Whitaker", None, dt.date(2010, 3, 15), 0, dt.date(2025, 6, 30)),
    (8, "Grace Nakamura", "General Practice", dt.date(2025, 3, 3), 1, None),
]

PET_NAMES = [
    "Luna", "Max", "Bella", "Charlie", "Milo", "Daisy", "Rocky", "Coco",
    "Oliver", "Lucy", "Bailey", "Nala", "Cooper", "Simba", "Pepper", "Ziggy",
    "Biscuit", "Mochi", "Shadow", "Ruby", "Tucker", "Willow", "Jasper",
    "Hazel", "Murphy", "Olive", "Gizmo", "Pumpkin", "Ginger", "Bear",
    "Juniper", "Kiwi", "Sunny", "Peanut", "Waffles", "Clementine", "Otis",
    "Maple", "Bruno", "Cleo", "Rosie", "Finn", "Tofu", "Noodle", "Sage",
]

# species -> (share of pets, [(breed or None, min_kg, max_kg, weight)], birth years, chip rate)
SPECIES = {
    "dog": (45, [
        ("Labrador Retriever", 25, 36, 6), ("Golden Retriever", 25, 34, 5),
        ("German Shepherd", 22, 40, 4), ("French Bulldog", 8, 14, 4),
        ("Beagle", 9, 12, 3), ("Dachshund", 5, 11, 3), ("Border Collie", 14, 20, 3),
        ("Standard Poodle", 18, 30, 2), ("Chihuahua", 1.5, 3, 3), ("Boxer", 25, 32, 2),
        ("Shih Tzu", 4, 7.5, 3), ("Australian Shepherd", 16, 29, 3),
        ("Cavalier King Charles Spaniel", 5.5, 8.5, 2), ("Siberian Husky", 16, 27, 2),
        ("Bernese Mountain Dog", 35, 50, 1), (None, 6, 35, 6),
    ], (2010, 2024), 0.85),
    "cat": (35, [
        ("Domestic Shorthair", 3.5, 6.5, 10), ("Domestic Longhair", 3.5, 6.5, 4),
        ("Maine Coon", 5.5, 10, 2), ("Siamese", 3, 5, 2), ("Ragdoll", 4.5, 9, 2),
        ("Bengal", 3.6, 6.8, 1), ("British Shorthair", 4, 8, 1), ("Sphynx", 3, 5, 1),
        (None, 3, 6, 4),
    ], (2007, 2024), 0.8),
    "rabbit": (7, [
        ("Holland Lop", 1.3, 1.8, 3), ("Netherland Dwarf", 0.8, 1.2, 2),
        ("Mini Rex", 1.4, 2.0, 2), ("Flemish Giant", 6, 9, 1), ("Lionhead", 1.1, 1.7, 2),
        (None, 1.2, 2.5, 2),
    ], (2017, 2024), 0.25),
    "bird": (5, [
        ("Budgerigar", 0.03, 0.045, 3), ("Cockatiel", 0.08, 0.12, 3),
        ("African Grey Parrot", 0.4, 0.55, 1), ("Sun Conure", 0.1, 0.13, 2),
    ], (2005, 2024), 0.1),
    "guinea pig": (4, [
        ("American", 0.7, 1.2, 3), ("Abyssinian", 0.7, 1.1, 2), ("Peruvian", 0.8, 1.2, 1),
        ("Teddy", 0.7, 1.1, 1), (None, 0.7, 1.2, 1),
    ], (2020, 2024), 0.05),
    "reptile": (4, [
        ("Bearded Dragon", 0.3, 0.55, 3), ("Leopard Gecko", 0.045, 0.08, 2),
        ("Ball Python", 1.0, 2.0, 2), ("Red-eared Slider", 0.5, 1.5, 1),
    ], (2012, 2024), 0.1),
}
EXOTIC_SPECIES = {"rabbit", "bird", "guinea pig", "reptile"}

# description -> (min cost, max cost, max quantity)
TREATMENT_CATALOG = {
    "Wellness examination": (55, 75, 1),
    "Recheck examination": (35, 50, 1),
    "Rabies vaccination": (22, 38, 1),
    "DHPP booster vaccination": (28, 45, 1),
    "Bordetella (kennel cough) vaccination": (25, 40, 1),
    "FVRCP booster vaccination": (28, 45, 1),
    "Feline leukemia (FeLV) vaccination": (30, 48, 1),
    "RHDV2 vaccination": (45, 65, 1),
    "Heartworm antigen test": (40, 65, 1),
    "Flea and tick preventive (monthly dose)": (18, 28, 6),
    "Dental scaling and polishing under anesthesia": (320, 520, 1),
    "Tooth extraction": (85, 180, 3),
    "Incisor and molar trim under sedation": (110, 210, 1),
    "Digital radiograph": (95, 160, 2),
    "Abdominal ultrasound": (250, 420, 1),
    "Complete blood count and chemistry panel": (120, 210, 1),
    "Urinalysis": (45, 80, 1),
    "Fecal parasite screening": (35, 60, 1),
    "Deworming treatment (fenbendazole)": (18, 35, 1),
    "Amoxicillin-clavulanate, 14-day course": (28, 55, 1),
    "Enrofloxacin (Baytril) oral suspension, 10-day course": (30, 50, 1),
    "Otic cleaning and ear medication": (40, 75, 1),
    "Skin cytology": (45, 85, 1),
    "Oclacitinib (Apoquel) tablets, 30-day supply": (60, 95, 1),
    "Anti-nausea injection (maropitant)": (35, 60, 1),
    "Subcutaneous fluid therapy": (40, 70, 1),
    "Intravenous fluids and hospitalization (per day)": (180, 320, 3),
    "Meloxicam pain relief, 7-day course": (22, 40, 1),
    "Wound cleaning and bandaging": (65, 140, 1),
    "Fine needle aspirate of mass": (75, 140, 1),
    "Eye examination with fluorescein stain": (45, 80, 1),
    "Ophthalmic antibiotic ointment": (20, 38, 1),
    "Ovariohysterectomy (spay)": (280, 480, 1),
    "Castration (neuter)": (190, 360, 1),
    "Nail trim": (15, 25, 1),
    "Beak and nail trim": (25, 45, 1),
    "Feather and skin examination": (50, 80, 1),
    "Gut motility medication and critical care feeding": (45, 85, 1),
    "Husbandry and UV lighting consultation": (45, 70, 1),
    "Calcium and vitamin D3 supplement": (15, 30, 2),
    "Nutrition and weight management consultation": (40, 60, 1),
}

DESEX_REASONS = {"Spay surgery", "Neuter surgery"}

# species -> [(reason, preferred specialty, main treatments, optional extra treatments, weight)]
REASONS = {
    "dog": [
        ("Annual wellness exam and vaccinations", "General Practice", ["Wellness examination"],
         ["Rabies vaccination", "DHPP booster vaccination", "Bordetella (kennel cough) vaccination",
          "Heartworm antigen test", "Flea and tick preventive (monthly dose)"], 8),
        ("Limping on hind leg", "Surgery", ["Digital radiograph"],
         ["Meloxicam pain relief, 7-day course"], 3),
        ("Itchy skin and hair loss", "Dermatology", ["Skin cytology"],
         ["Oclacitinib (Apoquel) tablets, 30-day supply"], 3),
        ("Ear infection, shaking head", "Dermatology", ["Otic cleaning and ear medication"], [], 3),
        ("Vomiting and diarrhea", "Internal Medicine", ["Anti-nausea injection (maropitant)"],
         ["Fecal parasite screening", "Complete blood count and chemistry panel"], 3),
        ("Dental cleaning", "Dentistry", ["Dental scaling and polishing under anesthesia"],
         ["Tooth extraction"], 3),
        ("Spay surgery", "Surgery", ["Ovariohysterectomy (spay)"], ["Meloxicam pain relief, 7-day course"], 1),
        ("Neuter surgery", "Surgery", ["Castration (neuter)"], ["Meloxicam pain relief, 7-day course"], 1),
        ("Lump found on chest", "Internal Medicine", ["Fine needle aspirate of mass"], [], 2),
        ("Cut paw pad after hike", "General Practice", ["Wound cleaning and bandaging"],
         ["Amoxicillin-clavulanate, 14-day course"], 2),
        ("Weight gain, diet advice", "General Practice", ["Nutrition and weight management consultation"], [], 1),
        ("Post-surgery recheck", "Surgery", ["Recheck examination"], [], 2),
        ("Red, watery eye", "General Practice", ["Eye examination with fluorescein stain"],
         ["Ophthalmic antibiotic ointment"], 2),
        ("Ate a sock, vomiting", "Internal Medicine", ["Digital radiograph"],
         ["Intravenous fluids and hospitalization (per day)"], 1),
    ],
    "cat": [
        ("Annual wellness exam and vaccinations", "General Practice", ["Wellness examination"],
         ["Rabies vaccination", "FVRCP booster vaccination", "Feline leukemia (FeLV) vaccination"], 8),
        ("Straining to urinate", "Internal Medicine", ["Urinalysis"],
         ["Complete blood count and chemistry panel", "Digital radiograph"], 3),
        ("Not eating for two days", "Internal Medicine", ["Complete blood count and chemistry panel"],
         ["Subcutaneous fluid therapy", "Anti-nausea injection (maropitant)"], 3),
        ("Frequent vomiting and hairballs", "Internal Medicine", ["Anti-nausea injection (maropitant)"],
         ["Abdominal ultrasound"], 2),
        ("Bad breath and drooling", "Dentistry", ["Dental scaling and polishing under anesthesia"],
         ["Tooth extraction"], 3),
        ("Spay surgery", "Surgery", ["Ovariohysterectomy (spay)"], [], 1),
        ("Neuter surgery", "Surgery", ["Castration (neuter)"], [], 1),
        ("Scratching and over-grooming", "Dermatology", ["Skin cytology"],
         ["Flea and tick preventive (monthly dose)"], 2),
        ("Weight loss in senior cat", "Internal Medicine", ["Complete blood count and chemistry panel"],
         ["Urinalysis"], 2),
        ("Abscess from cat fight", "General Practice", ["Wound cleaning and bandaging"],
         ["Amoxicillin-clavulanate, 14-day course"], 2),
        ("Squinting left eye", "General Practice", ["Eye examination with fluorescein stain"],
         ["Ophthalmic antibiotic ointment"], 2),
    ],
    "rabbit": [
        ("Not eating, no droppings", "Exotic Animals", ["Gut motility medication and critical care feeding"],
         ["Digital radiograph"], 3),
        ("Overgrown teeth", "Exotic Animals", ["Incisor and molar trim under sedation"], [], 2),
        ("Annual check-up and RHDV2 vaccination", "Exotic Animals", ["Wellness examination"],
         ["RHDV2 vaccination"], 3),
        ("Nail trim", "Exotic Animals", ["Nail trim"], [], 1),
        ("Head tilt", "Exotic Animals", ["Complete blood count and chemistry panel"],
         ["Enrofloxacin (Baytril) oral suspension, 10-day course"], 1),
    ],
    "bird": [
        ("Feather plucking", "Exotic Animals", ["Feather and skin examination"], [], 2),
        ("Overgrown beak", "Exotic Animals", ["Beak and nail trim"], [], 2),
        ("Annual wellness check", "Exotic Animals", ["Wellness examination"], ["Fecal parasite screening"], 2),
        ("Fluffed up and lethargic", "Exotic Animals", ["Complete blood count and chemistry panel"],
         ["Enrofloxacin (Baytril) oral suspension, 10-day course"], 1),
    ],
    "guinea pig": [
        ("Overgrown teeth", "Exotic Animals", ["Incisor and molar trim under sedation"], [], 2),
        ("Crusty skin and hair loss", "Exotic Animals", ["Skin cytology"], [], 2),
        ("Wellness check and nail trim", "Exotic Animals", ["Wellness examination"], ["Nail trim"], 2),
        ("Wheezing and sneezing", "Exotic Animals", ["Wellness examination"],
         ["Enrofloxacin (Baytril) oral suspension, 10-day course"], 2),
    ],
    "reptile": [
        ("Annual husbandry review", "Exotic Animals", ["Wellness examination"],
         ["Husbandry and UV lighting consultation"], 2),
        ("Stuck shed", "Exotic Animals", ["Wellness examination"], [], 1),
        ("Lethargic and not eating", "Exotic Animals", ["Fecal parasite screening"],
         ["Calcium and vitamin D3 supplement", "Deworming treatment (fenbendazole)"], 2),
        ("Soft jaw, metabolic bone disease check", "Exotic Animals", ["Digital radiograph"],
         ["Calcium and vitamin D3 supplement"], 1),
    ],
}

NOTES = {
    "completed": [
        "Owner reports symptoms started three days ago.",
        "Patient nervous; handled with towel wrap.",
        "Recheck in 2 weeks.",
        "Weight stable since last visit.",
        "Discussed diet change with owner.",
        "Muzzle used during exam.",
        "Owner declined further diagnostics for now.",
        "Good recovery, no complications.",
        "Medication dispensed; owner shown how to give it.",
        "Refer for imaging if no improvement in 7 days.",
        "Slightly overweight; target weight discussed.",
        "Vaccination certificate emailed to owner.",
    ],
    "scheduled": [
        "Owner requested a morning slot.",
        "Fasting required from midnight.",
        "Bring previous vaccination records.",
        "Second opinion requested by owner.",
        "New client, first visit.",
    ],
    "cancelled": [
        "Cancelled by owner by phone.",
        "Rescheduled due to vet availability.",
        "Pet recovered before the visit.",
        "Owner moved out of the area.",
    ],
    "no_show": [
        "No answer on reminder call.",
        "Owner did not arrive; left voicemail.",
    ],
}

# --------------------------------------------------------------------------
# Generation
# --------------------------------------------------------------------------


def _weighted(rng: random.Random, items, weights):
    return rng.choices(items, weights=weights, k=1)[0]


def _random_date(rng: random.Random, start: dt.date, end: dt.date) -> dt.date:
    return start + dt.timedelta(days=rng.randint(0, (end - start).days))


def _money(rng: random.Random, low: float, high: float) -> float:
    """A price in [low, high] with non-zero cents (so NUMERIC keeps it REAL)."""
    cents = rng.randint(int(low * 100), int(high * 100))
    if cents % 100 == 0:
        cents += rng.choice([50, 95, 99])
    return round(cents / 100, 2)


def make_owners(rng: random.Random) -> list[dict]:
    owners: list[dict] = []
    emails: set[str] = set()
    phones: set[str] = set()
    for owner_id in range(1, N_OWNERS + 1):
        first = rng.choice(FIRST_NAMES)
        last = rng.choice(LAST_NAMES)
        city = _weighted(rng, [c for c, _ in CITIES], [w for _, w in CITIES])

        email = None
        if rng.random() < 0.88:
            given, family = first.lower(), last.lower().replace("'", "").replace("-", "")
            pattern = rng.choice(["{f}.{l}", "{f}{l}", "{f0}{l}", "{f}_{l}{n}", "{l}.{f}"])
            local = pattern.format(f=given, l=family, f0=given[0], n=rng.randint(1, 99))
            email = f"{local}@{rng.choice(EMAIL_DOMAINS)}"
            suffix = 2
            while email in emails:
                email = f"{local}{suffix}@{email.split('@', 1)[1]}"
                suffix += 1
            emails.add(email)

        phone = None
        if rng.random() < 0.85:
            area = AREA_CODES.get(city) or rng.choice(["503", "503", "971"])
            while True:  # 555-0100..0199 is the range reserved for fictional use
                phone = f"({area}) 555-01{rng.randint(0, 99):02d}"
                if phone not in phones:
                    break
            phones.add(phone)

        if rng.random() < 0.1:
            joined = _random_date(rng, dt.date(2025, 1, 2), dt.date(2025, 9, 30))
        else:
            joined = _random_date(rng, dt.date(2012, 1, 9), dt.date(2024, 12, 20))
        owners.append(dict(owner_id=owner_id, first_name=first, last_name=last, email=email,
                           phone=phone, city=city, joined_on=joined))
    return owners


def make_pets(rng: random.Random, owners: list[dict]) -> list[dict]:
    # every owner gets one pet, the remaining pets go to random owners
    owner_ids = [o["owner_id"] for o in owners]
    extra = [rng.choice(owner_ids) for _ in range(N_PETS - len(owner_ids))]
    assignment = sorted(owner_ids + extra)
    species_names = list(SPECIES)
    chips: set[str] = set()
    pets: list[dict] = []
    for pet_id, owner_id in enumerate(assignment, start=1):
        used = {p["name"] for p in pets if p["owner_id"] == owner_id}
        name = rng.choice([n for n in PET_NAMES if n not in used])
        species = _weighted(rng, species_names, [SPECIES[s][0] for s in species_names])
        _, breeds, (y0, y1), chip_rate = SPECIES[species]
        breed, lo, hi, _ = _weighted(rng, breeds, [b[3] for b in breeds])

        birth = _random_date(rng, dt.date(y0, 1, 1), dt.date(y1, 10, 31))
        if rng.random() < 0.12:  # rescues with unknown birthday
            birth = None

        weight = rng.uniform(lo, hi)
        weight = round(weight, 3) if weight < 1 else round(weight, 1)
        if rng.random() < 0.04:
            weight = None

        chip = None
        if rng.random() < chip_rate:
            while True:
                chip = f"9851120{rng.randint(0, 99_999_999):08d}"
                if chip not in chips:
                    break
            chips.add(chip)

        pets.append(dict(pet_id=pet_id, owner_id=owner_id, name=name, species=species,
                         breed=breed, birth_date=birth, weight_kg=weight, microchip=chip))
    return pets


def _random_slot(rng: random.Random, start: dt.date, end: dt.date) -> dt.datetime:
    """A 30-minute slot in opening hours: Mon-Fri 08:00-17:30, Sat 09:00-12:30."""
    while True:
        day = _random_date(rng, start, end)
        wd = day.weekday()
        if wd == 6 or day in CLOSED_DAYS:
            continue
        if wd == 5:
            hour, minute = rng.choice([(h, m) for h in range(9, 13) for m in (0, 30)])
        else:
            hour, minute = rng.choice([(h, m) for h in range(8, 18) for m in (0, 30)])
        return dt.datetime(day.year, day.month, day.day, hour, minute)


def _vet_available(vet, day: dt.date) -> bool:
    _, _, _, hired, _, left = vet
    return hired <= day and (left is None or day <= left)


def make_appointments(rng: random.Random, owners, pets) -> list[dict]:
    owner_joined = {o["owner_id"]: o["joined_on"] for o in owners}
    desexed: set[int] = set()
    booked: set[tuple[int, dt.datetime]] = set()
    pet_slots: set[tuple[int, dt.date]] = set()

    slots = [_random_slot(rng, FIRST_DAY, REFERENCE_DATE - dt.timedelta(days=1))
             for _ in range(N_PAST_APPOINTMENTS)]
    slots += [_random_slot(rng, REFERENCE_DATE + dt.timedelta(days=1), LAST_DAY)
              for _ in range(N_FUTURE_APPOINTMENTS)]
    slots.sort()

    appointments: list[dict] = []
    for when in slots:
        day = when.date()
        while True:
            pet = rng.choice(pets)
            if owner_joined[pet["owner_id"]] > day:
                continue
            if pet["birth_date"] is not None and pet["birth_date"] + dt.timedelta(days=70) > day:
                continue
            if (pet["pet_id"], day) in pet_slots:
                continue
            options = REASONS[pet["species"]]
            reason = _weighted(rng, options, [r[4] for r in options])
            if reason[0] in DESEX_REASONS:
                if pet["pet_id"] in desexed:
                    continue
                desexed.add(pet["pet_id"])
            break

        text, specialty, _, _, _ = reason
        available = [v for v in VETS if _vet_available(v, day)]
        preferred = [v for v in available if v[2] == specialty]
        general = [v for v in available if v[2] in ("General Practice", None)]
        share = 0.85 if pet["species"] in EXOTIC_SPECIES else 0.7
        candidates = preferred if (preferred and rng.random() < share) else general
        vet = rng.choice(candidates)
        while (vet[0], when) in booked:  # double-booked: move to another slot the same day
            when = when.replace(hour=rng.choice([9, 10, 11, 12]), minute=rng.choice([0, 30]))
        booked.add((vet[0], when))
        pet_slots.add((pet["pet_id"], day))

        if day > REFERENCE_DATE:
            status = "scheduled"
        else:
            status = _weighted(rng, ["completed", "cancelled", "no_show"], [84, 9, 7])
        note_rate = {"completed": 0.35, "scheduled": 0.3, "cancelled": 0.6, "no_show": 0.4}[status]
        notes = rng.choice(NOTES[status]) if rng.random() < note_rate else None

        appointments.append(dict(pet_id=pet["pet_id"], vet_id=vet[0], when=when, reason=text,
                                 status=status, notes=notes, _reason=reason, _owner=pet["owner_id"]))

    appointments.sort(key=lambda a: (a["when"], a["vet_id"]))
    for appointment_id, a in enumerate(appointments, start=1):
        a["appointment_id"] = appointment_id
    return appointments


def make_treatments(rng: random.Random, appointments) -> list[dict]:
    treatments: list[dict] = []
    for a in appointments:
        if a["status"] != "completed":
            continue
        _, _, mains, extras, _ = a["_reason"]
        chosen = [rng.choice(mains)]
        if extras and rng.random() < 0.4:
            chosen.append(rng.choice(extras))
        for description in chosen:
            low, high, max_qty = TREATMENT_CATALOG[description]
            quantity = 1 if max_qty == 1 or rng.random() < 0.5 else rng.randint(2, max_qty)
            treatments.append(dict(treatment_id=len(treatments) + 1,
                                   appointment_id=a["appointment_id"], description=description,
                                   cost=_money(rng, low, high), quantity=quantity))
    return treatments


def make_invoices(rng: random.Random, appointments, treatments) -> list[dict]:
    totals: dict[int, float] = {}
    for t in treatments:
        totals[t["appointment_id"]] = totals.get(t["appointment_id"], 0.0) + t["cost"] * t["quantity"]
    invoices: list[dict] = []
    for a in appointments:
        if a["appointment_id"] not in totals:
            continue
        issued = a["when"].date()
        age = (REFERENCE_DATE - issued).days
        unpaid_rate = 0.45 if age <= 30 else 0.07
        paid = None
        if rng.random() >= unpaid_rate:
            delay = 0 if rng.random() < 0.6 else rng.randint(1, 28)
            paid = issued + dt.timedelta(days=min(delay, age))
        invoices.append(dict(invoice_id=len(invoices) + 1, owner_id=a["_owner"],
                             appointment_id=a["appointment_id"], issued_on=issued,
                             amount=round(totals[a["appointment_id"]], 2), paid_on=paid))
    return invoices


# --------------------------------------------------------------------------
# Writing
# --------------------------------------------------------------------------


def _iso(value):
    return value.isoformat() if isinstance(value, dt.date) else value


def write_database(path: Path) -> dict[str, int]:
    rng = random.Random(SEED)
    owners = make_owners(rng)
    pets = make_pets(rng, owners)
    appointments = make_appointments(rng, owners, pets)
    treatments = make_treatments(rng, appointments)
    invoices = make_invoices(rng, appointments, treatments)

    conn = sqlite3.connect(path, isolation_level=None)
    try:
        conn.execute("PRAGMA journal_mode=DELETE")
        conn.execute("PRAGMA foreign_keys=ON")
        conn.execute("BEGIN")
        for statement in SCHEMA.split(";"):
            if statement.strip():
                conn.execute(statement)
        conn.executemany(
            "INSERT INTO owners VALUES (?, ?, ?, ?, ?, ?, ?)",
            [(o["owner_id"], o["first_name"], o["last_name"], o["email"], o["phone"], o["city"],
              _iso(o["joined_on"])) for o in owners])
        conn.executemany(
            "INSERT INTO vets VALUES (?, ?, ?, ?, ?)",
            [(v[0], v[1], v[2], _iso(v[3]), v[4]) for v in VETS])
        conn.executemany(
            "INSERT INTO pets VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
            [(p["pet_id"], p["owner_id"], p["name"], p["species"], p["breed"], _iso(p["birth_date"]),
              p["weight_kg"], p["microchip"]) for p in pets])
        conn.executemany(
            "INSERT INTO appointments VALUES (?, ?, ?, ?, ?, ?, ?)",
            [(a["appointment_id"], a["pet_id"], a["vet_id"], a["when"].strftime("%Y-%m-%d %H:%M"),
              a["reason"], a["status"], a["notes"]) for a in appointments])
        conn.executemany(
            "INSERT INTO treatments VALUES (?, ?, ?, ?, ?)",
            [(t["treatment_id"], t["appointment_id"], t["description"], t["cost"], t["quantity"])
             for t in treatments])
        conn.executemany(
            "INSERT INTO invoices VALUES (?, ?, ?, ?, ?, ?)",
            [(i["invoice_id"], i["owner_id"], i["appointment_id"], _iso(i["issued_on"]), i["amount"],
              _iso(i["paid_on"])) for i in invoices])
        conn.execute("COMMIT")

        problems = conn.execute("PRAGMA foreign_key_check").fetchall()
        if problems:
            raise RuntimeError(f"foreign key violations: {problems[:10]}")
        integrity = conn.execute("PRAGMA integrity_check").fetchone()[0]
        if integrity != "ok":
            raise RuntimeError(f"integrity check failed: {integrity}")
        mismatched = conn.execute(
            """SELECT i.invoice_id FROM invoices i
               JOIN (SELECT appointment_id, ROUND(SUM(cost * quantity), 2) AS total
                     FROM treatments GROUP BY appointment_id) t USING (appointment_id)
               WHERE ABS(i.amount - t.total) > 0.001""").fetchall()
        if mismatched:
            raise RuntimeError(f"invoice amounts do not match treatments: {mismatched[:10]}")
        bad_status = conn.execute(
            "SELECT COUNT(*) FROM appointments WHERE (scheduled_at > ?) != (status = 'scheduled')",
            (REFERENCE_DATE.isoformat(),)).fetchone()[0]
        if bad_status:
            raise RuntimeError(f"{bad_status} appointments have a status inconsistent with their date")
        bad_types = conn.execute(
            "SELECT COUNT(*) FROM treatments WHERE typeof(cost) != 'real'").fetchone()[0]
        if bad_types:
            raise RuntimeError(f"{bad_types} treatment costs not stored as REAL")

        counts = {t: conn.execute(f"SELECT COUNT(*) FROM {t}").fetchone()[0] for t in TABLES}
        conn.execute("VACUUM")
    finally:
        conn.close()
    return counts


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=Path(__file__).resolve().parent / "clinic.sqlite",
                        help="output path (default: clinic.sqlite next to this script)")
    args = parser.parse_args(argv)

    out: Path = args.out.resolve()
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = out.with_name(f".{out.name}.{os.getpid()}.tmp")
    leftovers = [tmp, tmp.with_name(tmp.name + "-journal")]
    try:
        for p in leftovers:
            p.unlink(missing_ok=True)
        counts = write_database(tmp)
        os.replace(tmp, out)
    finally:
        for p in leftovers:
            p.unlink(missing_ok=True)

    summary = ", ".join(f"{t}={n}" for t, n in counts.items())
    print(f"{out.name}: {len(counts)} tables ({summary}; {sum(counts.values())} rows total)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
