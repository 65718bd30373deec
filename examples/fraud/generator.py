"""A seeded generator of card transactions with fraud that looks like fraud, and chargebacks that arrive late.

Everything is vectorised numpy: two million transactions take a few seconds. The same config (seed included)
gives the same tables, byte for byte.

**The world.** Cards live in one of ~30 US metro areas (home latitude/longitude near the city centre) and
have habits: a typical amount (log-normal median and spread) and active hours (a centre and a spread over
the day). Merchants have a category (grocery, fuel, travel, ...; two categories sell online), a city and a
location; a transaction happens at the merchant's location. Most purchases are card-present at a merchant
of the card's city, some are online anywhere, and some cards travel for a few days to another city.

**Fraud** (ground truth in ``is_fraud`` and ``fraud_pattern``, never landed in the raw tables):

* ``card_testing``: a compromised card makes 3-12 tiny online payments (0.50 to 5.00) 15 s to 3 min apart;
* ``cash_out``: after most tests, 1-3 purchases many times the card's habit within the next hour or two;
* ``impossible_travel``: minutes after one of the card's genuine purchases, 1-3 purchases at a card-present
  merchant in a city at least 800 km away;
* ``high_amount``: one or two purchases 10-40 times the card's habit, at night, in electronics, jewellery
  or travel;
* ``stolen_card``: a stolen card used in its own city, 2-6 purchases over a few hours at ordinary
  merchants, for 1-4 times the card's habit (the hard case: nothing is far or tiny);
* ``compromised_merchant``: a few card-present merchants start, part-way through the period, to charge
  stolen card numbers every day until the end, mostly of cards from their own city and for ordinary
  amounts: only the merchant's rising chargeback rate gives them away, once the chargebacks arrive.

Genuine behaviour overlaps with each pattern, as it does in real data: some cardholders make bursts of small
in-app payments minutes apart, genuine purchases are now and then 4-20 times the card's habit, some
purchases happen at merchants in other cities (card-not-present, travel), and cards travel.

**Labels arrive late, as chargebacks.** A fraudulent transaction is reported (``reported_at``) 12 hours to
``label_maturity_days`` after it happened (median ~1 week), and ``unreported_fraud_share`` of fraud is
never reported. Only fraud is reported: a transaction is legitimate when its maturity window has passed
without a chargeback, which is how ``label_transaction__fraud`` reads it.

**Dirty rows** (``dirty_row_share`` of transactions): re-sent duplicates, non-positive amounts, impossible
coordinates and missing card ids, for staging's validation rules to quarantine.

All times are UTC; inside the generator they are int64 microseconds since the epoch (what DuckDB stores),
and the tables carry ``timestamp[us, tz=UTC]``. Within a card no two transactions share a microsecond.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import hashlib
import json
from dataclasses import dataclass

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

UTC = dt.timezone.utc
MICROS_PER_SECOND = 1_000_000
MICROS_PER_HOUR = 3600 * MICROS_PER_SECOND
MICROS_PER_DAY = 24 * MICROS_PER_HOUR
TIMESTAMP = pa.timestamp("us", tz="UTC")

# Metro areas: name, latitude, longitude, relative population.
CITIES = (
    ("new_york", 40.7128, -74.0060, 19.0), ("los_angeles", 34.0522, -118.2437, 13.0),
    ("chicago", 41.8781, -87.6298, 9.5), ("dallas", 32.7767, -96.7970, 7.6),
    ("houston", 29.7604, -95.3698, 7.1), ("washington", 38.9072, -77.0369, 6.3),
    ("philadelphia", 39.9526, -75.1652, 6.2), ("miami", 25.7617, -80.1918, 6.1),
    ("atlanta", 33.7490, -84.3880, 6.0), ("boston", 42.3601, -71.0589, 4.9),
    ("phoenix", 33.4484, -112.0740, 4.9), ("san_francisco", 37.7749, -122.4194, 4.7),
    ("detroit", 42.3314, -83.0458, 4.4), ("seattle", 47.6062, -122.3321, 4.0),
    ("minneapolis", 44.9778, -93.2650, 3.7), ("san_diego", 32.7157, -117.1611, 3.3),
    ("tampa", 27.9506, -82.4572, 3.2), ("denver", 39.7392, -104.9903, 3.0),
    ("st_louis", 38.6270, -90.1994, 2.8), ("baltimore", 39.2904, -76.6122, 2.8),
    ("charlotte", 35.2271, -80.8431, 2.7), ("orlando", 28.5383, -81.3792, 2.7),
    ("san_antonio", 29.4241, -98.4936, 2.6), ("portland", 45.5152, -122.6784, 2.5),
    ("sacramento", 38.5816, -121.4944, 2.4), ("pittsburgh", 40.4406, -79.9959, 2.4),
    ("las_vegas", 36.1699, -115.1398, 2.3), ("austin", 30.2672, -97.7431, 2.3),
    ("cincinnati", 39.1031, -84.5120, 2.2), ("kansas_city", 39.0997, -94.5786, 2.2),
)

# Merchant categories: name, share of merchants, amount multiplier of a card's habit, sells online.
CATEGORIES = (
    ("grocery", 0.18, 1.0, False), ("restaurant", 0.16, 0.8, False), ("gas_station", 0.10, 0.9, False),
    ("coffee_shop", 0.08, 0.2, False), ("pharmacy", 0.06, 0.7, False), ("clothing", 0.07, 1.6, False),
    ("entertainment", 0.06, 1.0, False), ("electronics", 0.05, 3.0, False), ("travel", 0.04, 5.0, False),
    ("jewelry", 0.02, 5.0, False), ("online_retail", 0.12, 1.3, True), ("digital_goods", 0.06, 0.4, True),
)
CATEGORY_NAMES = tuple(c[0] for c in CATEGORIES)
_CATEGORY_INDEX = {name: i for i, name in enumerate(CATEGORY_NAMES)}
FRAUD_PATTERNS = ("", "card_testing", "cash_out", "impossible_travel", "high_amount", "compromised_merchant",
                  "stolen_card")
DIRTY_KINDS = ("duplicate", "non_positive_amount", "impossible_coordinates", "missing_card")

EARTH_RADIUS_KM = 6371.0088


@dataclass(frozen=True)
class FraudConfig:
    """What to generate. ``n_transactions`` counts genuine purchases; genuine in-app payment bursts, fraud and
    dirty rows come on top (about 6% more rows at the defaults)."""

    seed: int = 7
    n_transactions: int = 2_000_000
    start: dt.date = dt.date(2024, 1, 1)
    days: int = 120
    n_cards: int | None = None  # default: one card per 100 transactions
    n_merchants: int | None = None  # default: one merchant per 400 transactions (at least 60)
    compromised_card_share: float = 0.05
    compromised_merchant_share: float = 0.003
    label_maturity_days: int = 30
    unreported_fraud_share: float = 0.05
    dirty_row_share: float = 0.0002

    def __post_init__(self) -> None:
        if isinstance(self.start, str):
            object.__setattr__(self, "start", dt.date.fromisoformat(self.start))
        if self.n_transactions < 100 or self.days < 2:
            raise ValueError("generate at least 100 transactions over at least 2 days")
        if self.label_maturity_days < 1:
            raise ValueError("label_maturity_days must be at least 1")

    @property
    def cards(self) -> int:
        return self.n_cards or max(20, self.n_transactions // 100)

    @property
    def merchants(self) -> int:
        return self.n_merchants or max(60, self.n_transactions // 400)

    @property
    def start_at(self) -> dt.datetime:
        return dt.datetime(self.start.year, self.start.month, self.start.day, tzinfo=UTC)

    @property
    def end_at(self) -> dt.datetime:
        """End of the transaction period (exclusive); chargebacks keep arriving up to the maturity after it."""
        return self.start_at + dt.timedelta(days=self.days)

    def as_dict(self) -> dict:
        data = dataclasses.asdict(self)
        data["start"] = self.start.isoformat()
        return data

    @classmethod
    def from_dict(cls, data: dict) -> FraudConfig:
        return cls(**data)

    def fingerprint(self) -> str:
        return hashlib.sha256(json.dumps(self.as_dict(), sort_keys=True).encode()).hexdigest()[:16]


@dataclass
class FraudData:
    """The generated tables. ``transactions`` carries the ground truth (``is_fraud``, ``fraud_pattern``,
    ``dirty_kind``), which the loader leaves out of the raw table."""

    config: FraudConfig
    cards: pa.Table
    merchants: pa.Table
    transactions: pa.Table
    chargebacks: pa.Table


def _micros(moment: dt.datetime) -> int:
    return (moment - dt.datetime(1970, 1, 1, tzinfo=UTC)) // dt.timedelta(microseconds=1)


def haversine_km(lat1: np.ndarray, lon1: np.ndarray, lat2: np.ndarray, lon2: np.ndarray) -> np.ndarray:
    lat1, lon1, lat2, lon2 = (np.radians(np.asarray(a, dtype=np.float64)) for a in (lat1, lon1, lat2, lon2))
    a = np.sin((lat2 - lat1) / 2) ** 2 + np.cos(lat1) * np.cos(lat2) * np.sin((lon2 - lon1) / 2) ** 2
    return 2 * EARTH_RADIUS_KM * np.arcsin(np.sqrt(np.clip(a, 0.0, 1.0)))


def _ids(prefix: str, numbers: np.ndarray, width: int) -> pa.Array:
    """Zero-padded string ids built in Arrow (a Python f-string per row costs seconds at full size)."""
    digits = pc.utf8_lpad(pc.cast(pa.array(numbers, pa.int64()), pa.string()), width=width, padding="0")
    return pc.binary_join_element_wise(pa.scalar(prefix), digits, "")


class _World:
    """Cards and merchants, with the lookups the transaction draws need."""

    def __init__(self, config: FraudConfig, rng: np.random.Generator):
        n_cities = len(CITIES)
        city_lat = np.array([c[1] for c in CITIES])
        city_lon = np.array([c[2] for c in CITIES])
        city_weight = np.array([c[3] for c in CITIES])
        city_weight /= city_weight.sum()
        self.city_lat, self.city_lon = city_lat, city_lon
        self.city_distance = haversine_km(city_lat[:, None], city_lon[:, None], city_lat[None, :], city_lon[None, :])

        n = config.cards
        self.card_city = rng.choice(n_cities, size=n, p=city_weight)
        self.home_lat = city_lat[self.card_city] + rng.normal(0, 0.08, n)
        self.home_lon = city_lon[self.card_city] + rng.normal(0, 0.10, n)
        self.amount_median = np.exp(rng.normal(np.log(35.0), 0.5, n))
        self.amount_sigma = rng.uniform(0.35, 0.8, n)
        self.hour_center = np.clip(rng.normal(14.5, 2.5, n), 9.0, 20.0)
        self.hour_spread = rng.uniform(2.0, 4.0, n)
        self.activity = rng.gamma(1.5, 1.0, n)
        self.issued_at = _micros(config.start_at) - (rng.uniform(30, 1500, n) * MICROS_PER_DAY).astype(np.int64)

        m = config.merchants
        shares = np.array([c[1] for c in CATEGORIES])
        category = rng.choice(len(CATEGORIES), size=m, p=shares / shares.sum())
        online = np.array([c[3] for c in CATEGORIES])
        # Every city gets at least one card-present grocery, so local draws always find a merchant.
        category[:n_cities] = _CATEGORY_INDEX["grocery"]
        city = rng.choice(n_cities, size=m, p=city_weight)
        city[:n_cities] = np.arange(n_cities)
        self.merchant_category = category
        self.merchant_online = online[category]
        self.merchant_city = city
        self.merchant_lat = city_lat[city] + rng.normal(0, 0.06, m)
        self.merchant_lon = city_lon[city] + rng.normal(0, 0.08, m)
        self.popularity = rng.lognormal(0.0, 1.0, m)
        self.amount_multiplier = np.array([c[2] for c in CATEGORIES])

        # Card-present merchants sorted by city; key = city + cumulative popularity share within the city, so a
        # draw at city c is searchsorted(key, c + u) for u uniform in (0, 1).
        present = np.flatnonzero(~self.merchant_online)
        order = np.lexsort((present, city[present]))
        self.present = present[order]
        present_city = city[self.present]
        weight = self.popularity[self.present]
        cumulative = np.cumsum(weight)
        starts = np.searchsorted(present_city, np.arange(n_cities))
        city_total = np.add.reduceat(weight, starts)
        before = cumulative[starts] - weight[starts]
        self.present_key = present_city + (cumulative - before[present_city]) / city_total[present_city]
        self.online = np.flatnonzero(self.merchant_online)
        online_weight = np.cumsum(self.popularity[self.online])
        self.online_key = online_weight / online_weight[-1]
        all_weight = np.cumsum(self.popularity[self.present])
        self.present_any_key = all_weight / all_weight[-1]
        self.categories_of = {name: np.flatnonzero((category == i) & ~self.merchant_online)
                              for name, i in _CATEGORY_INDEX.items()}

    def local_merchant(self, city: np.ndarray, rng: np.random.Generator) -> np.ndarray:
        u = rng.uniform(1e-9, 1.0, len(city))
        index = np.searchsorted(self.present_key, city + u)
        return self.present[np.minimum(index, len(self.present) - 1)]

    def online_merchant(self, n: int, rng: np.random.Generator) -> np.ndarray:
        index = np.searchsorted(self.online_key, rng.uniform(0, 1, n))
        return self.online[np.minimum(index, len(self.online) - 1)]

    def any_present_merchant(self, n: int, rng: np.random.Generator) -> np.ndarray:
        index = np.searchsorted(self.present_any_key, rng.uniform(0, 1, n))
        return self.present[np.minimum(index, len(self.present) - 1)]

    def merchant_of_categories(self, names: tuple[str, ...], n: int, rng: np.random.Generator) -> np.ndarray:
        pool = np.concatenate([self.categories_of[name] for name in names])
        if len(pool) == 0:
            return self.any_present_merchant(n, rng)
        return pool[rng.integers(0, len(pool), n)]

    def far_city(self, city: np.ndarray, rng: np.random.Generator, min_km: float = 800.0) -> np.ndarray:
        """A random city at least ``min_km`` from each given city (the farthest one after a few misses)."""
        result = rng.integers(0, len(CITIES), len(city))
        for _ in range(6):
            near = self.city_distance[city, result] < min_km
            if not near.any():
                break
            result[near] = rng.integers(0, len(CITIES), int(near.sum()))
        near = self.city_distance[city, result] < min_km
        result[near] = np.argmax(self.city_distance[city[near]], axis=1)
        return result

    def habit_amount(self, card: np.ndarray, merchant: np.ndarray, rng: np.random.Generator) -> np.ndarray:
        median = self.amount_median[card] * self.amount_multiplier[self.merchant_category[merchant]]
        return median * np.exp(rng.normal(0.0, self.amount_sigma[card]))


@dataclass
class _Rows:
    """Transactions under construction, as parallel arrays."""

    card: np.ndarray
    merchant: np.ndarray
    at: np.ndarray  # int64 microseconds
    amount: np.ndarray
    pattern: np.ndarray  # index into FRAUD_PATTERNS

    @staticmethod
    def concat(parts: list[_Rows]) -> _Rows:
        return _Rows(*(np.concatenate([getattr(p, f.name) for p in parts]) for f in dataclasses.fields(_Rows)))

    def take(self, index: np.ndarray) -> _Rows:
        return _Rows(*(getattr(self, f.name)[index] for f in dataclasses.fields(_Rows)))


def _genuine(config: FraudConfig, world: _World, rng: np.random.Generator) -> _Rows:
    n_cards = config.cards
    counts = rng.multinomial(config.n_transactions, world.activity / world.activity.sum())
    card = np.repeat(np.arange(n_cards), counts)
    n = len(card)
    day = rng.integers(0, config.days, n)
    hour = np.mod(world.hour_center[card] + world.hour_spread[card] * rng.normal(0, 1, n), 24.0)
    at = _micros(config.start_at) + day * MICROS_PER_DAY + (hour * MICROS_PER_HOUR).astype(np.int64)

    # Trips: some cards spend 2-7 days in another city, where their card-present purchases then happen.
    city = world.card_city[card].copy()
    travels = rng.uniform(0, 1, n_cards) < 0.15
    trip_start = rng.integers(0, max(1, config.days - 7), n_cards)
    trip_days = rng.integers(2, 8, n_cards)
    trip_city = world.far_city(world.card_city, rng, min_km=300.0)
    on_trip = travels[card] & (day >= trip_start[card]) & (day < trip_start[card] + trip_days[card])
    city[on_trip] = trip_city[card][on_trip]

    channel = rng.uniform(0, 1, n)
    merchant = world.local_merchant(city, rng)
    is_online = channel < 0.15
    merchant[is_online] = world.online_merchant(int(is_online.sum()), rng)
    elsewhere = (channel >= 0.15) & (channel < 0.17)
    merchant[elsewhere] = world.any_present_merchant(int(elsewhere.sum()), rng)
    amount = world.habit_amount(card, merchant, rng)
    splurge = rng.uniform(0, 1, n) < 0.004  # a genuine big purchase: catering, a television, a flight
    amount[splurge] *= rng.uniform(4, 20, int(splurge.sum()))
    genuine = _Rows(card, merchant, at, amount, np.zeros(n, dtype=np.int8))

    # In-app payers: bursts of 2-5 small payments at one online merchant, 20 s to 10 min apart.
    app_users = np.flatnonzero(rng.uniform(0, 1, n_cards) < 0.10)
    bursts = rng.poisson(config.days / 8, len(app_users))
    burst_card = np.repeat(app_users, bursts)
    if len(burst_card) == 0:
        return genuine
    k = rng.integers(2, 6, len(burst_card))
    card = np.repeat(burst_card, k)
    starts = _micros(config.start_at) + (rng.uniform(0, config.days, len(burst_card)) * MICROS_PER_DAY).astype(np.int64)
    gaps = (rng.uniform(20, 600, len(card)) * MICROS_PER_SECOND).astype(np.int64)
    first = np.r_[0, np.cumsum(k)[:-1]]
    offsets = np.cumsum(gaps) - np.repeat(np.cumsum(gaps)[first] - gaps[first], k)
    at = np.repeat(starts, k) + offsets
    merchant = np.repeat(world.online_merchant(len(burst_card), rng), k)
    amount = rng.choice(np.array([0.99, 1.99, 2.99, 4.99, 9.99]), size=len(card))
    return _Rows.concat([genuine, _Rows(card, merchant, at, amount, np.zeros(len(card), dtype=np.int8))])


def _card_fraud(config: FraudConfig, world: _World, genuine: _Rows, rng: np.random.Generator) -> list[_Rows]:
    """Fraud on compromised cards: card testing (often cashed out), impossible travel, high amounts."""
    n_compromised = int(round(config.compromised_card_share * config.cards))
    if n_compromised == 0:
        return []
    cards = rng.choice(config.cards, size=n_compromised, replace=False)
    start, end = _micros(config.start_at), _micros(config.end_at)
    compromised_at = rng.integers(start + 2 * MICROS_PER_DAY, end - 6 * MICROS_PER_HOUR, n_compromised)
    kind = rng.choice(4, size=n_compromised, p=[0.3, 0.25, 0.2, 0.25])
    parts: list[_Rows] = []

    # Card testing: 3-12 tiny online payments seconds to minutes apart, at one or two merchants.
    testing = cards[kind == 0]
    testing_at = compromised_at[kind == 0]
    if len(testing):
        k = rng.integers(3, 13, len(testing))
        card = np.repeat(testing, k)
        gaps = (rng.uniform(15, 180, len(card)) * MICROS_PER_SECOND).astype(np.int64)
        first = np.r_[0, np.cumsum(k)[:-1]]
        offsets = np.cumsum(gaps) - np.repeat(np.cumsum(gaps)[first] - gaps[first], k)
        at = np.repeat(testing_at, k) + offsets
        merchant = np.repeat(world.online_merchant(len(testing), rng), k)
        switch = rng.uniform(0, 1, len(card)) < 0.3
        merchant[switch] = world.online_merchant(int(switch.sum()), rng)
        amount = np.where(rng.uniform(0, 1, len(card)) < 0.25, 1.0, rng.uniform(0.5, 5.0, len(card)))
        parts.append(_Rows(card, merchant, at, amount, np.full(len(card), 1, np.int8)))

        # Cash-out after most tests: 1-3 large purchases within the next two hours.
        cash = rng.uniform(0, 1, len(testing)) < 0.6
        if cash.any():
            n_cash = rng.integers(1, 4, int(cash.sum()))
            burst_end = at[np.cumsum(k) - 1][cash]
            card = np.repeat(testing[cash], n_cash)
            after = (rng.uniform(5, 120, len(card)) * 60 * MICROS_PER_SECOND).astype(np.int64)
            at = np.repeat(burst_end, n_cash) + after
            merchant = world.merchant_of_categories(("electronics", "jewelry"), len(card), rng)
            online = rng.uniform(0, 1, len(card)) < 0.5
            merchant[online] = world.online_merchant(int(online.sum()), rng)
            amount = world.amount_median[card] * rng.uniform(6, 25, len(card))
            parts.append(_Rows(card, merchant, at, amount, np.full(len(card), 2, np.int8)))

    # Impossible travel: minutes after a genuine purchase, purchases in a city >= 800 km away.
    travel = cards[kind == 1]
    if len(travel):
        by_card = genuine.take(np.argsort(genuine.card, kind="stable"))
        counts = np.bincount(by_card.card, minlength=config.cards)
        offsets = np.r_[0, np.cumsum(counts)[:-1]]
        travel = travel[counts[travel] > 0]
        pick = offsets[travel] + (rng.uniform(0, 1, len(travel)) * counts[travel]).astype(np.int64)
        anchor_at = by_card.at[pick]
        anchor_city = world.merchant_city[by_card.merchant[pick]]
        n_far = rng.integers(1, 4, len(travel))
        card = np.repeat(travel, n_far)
        city = np.repeat(world.far_city(anchor_city, rng), n_far)
        step = (rng.uniform(2, 15, len(card)) * 60 * MICROS_PER_SECOND).astype(np.int64)
        first = np.r_[0, np.cumsum(n_far)[:-1]]
        within = np.cumsum(step) - np.repeat(np.cumsum(step)[first] - step[first], n_far)
        first_at = anchor_at + (rng.uniform(3, 45, len(travel)) * 60 * MICROS_PER_SECOND).astype(np.int64)
        at = np.repeat(first_at, n_far) + within
        merchant = world.local_merchant(city, rng)
        amount = world.habit_amount(card, merchant, rng) * rng.uniform(1.5, 6, len(card))
        parts.append(_Rows(card, merchant, at, amount, np.full(len(card), 3, np.int8)))

    # High amount: one or two purchases far above the card's habit, at night.
    high = cards[kind == 2]
    if len(high):
        n_high = rng.integers(1, 3, len(high))
        card = np.repeat(high, n_high)
        night = (compromised_at[kind == 2] // MICROS_PER_DAY) * MICROS_PER_DAY + \
            (rng.uniform(0, 5, len(high)) * MICROS_PER_HOUR).astype(np.int64)
        at = np.repeat(night, n_high) + (rng.uniform(0, 90, len(card)) * 60 * MICROS_PER_SECOND).astype(np.int64)
        merchant = world.merchant_of_categories(("electronics", "jewelry", "travel"), len(card), rng)
        amount = world.amount_median[card] * rng.uniform(10, 40, len(card))
        parts.append(_Rows(card, merchant, at, amount, np.full(len(card), 4, np.int8)))

    # Stolen card used locally: a few ordinary-looking purchases over a few hours in the card's own city.
    stolen = cards[kind == 3]
    if len(stolen):
        n_stolen = rng.integers(2, 7, len(stolen))
        card = np.repeat(stolen, n_stolen)
        step = (rng.uniform(10, 120, len(card)) * 60 * MICROS_PER_SECOND).astype(np.int64)
        first = np.r_[0, np.cumsum(n_stolen)[:-1]]
        within = np.cumsum(step) - np.repeat(np.cumsum(step)[first] - step[first], n_stolen)
        at = np.repeat(compromised_at[kind == 3], n_stolen) + within
        merchant = world.local_merchant(world.card_city[card], rng)
        amount = world.habit_amount(card, merchant, rng) * rng.uniform(1, 4, len(card))
        parts.append(_Rows(card, merchant, at, amount, np.full(len(card), 6, np.int8)))
    return parts


def _merchant_fraud(config: FraudConfig, world: _World, rng: np.random.Generator) -> list[_Rows]:
    """A few card-present merchants charge stolen card numbers every day from some point on."""
    candidates = np.flatnonzero(~world.merchant_online)
    n = min(len(candidates), max(1, int(round(config.compromised_merchant_share * config.merchants))))
    merchants = rng.choice(candidates, size=n, replace=False)
    start, end = _micros(config.start_at), _micros(config.end_at)
    window_start = start + (rng.uniform(0.2, 0.6, n) * (end - start)).astype(np.int64)
    per_day = rng.uniform(1.0, 4.0, n) * max(1.0, config.n_transactions / config.days / 20_000)
    count = rng.poisson(per_day * (end - window_start) / MICROS_PER_DAY)
    merchant = np.repeat(merchants, count)
    within = rng.uniform(0, 1, len(merchant)) * np.repeat(end - window_start, count)
    at = np.repeat(window_start, count) + within.astype(np.int64)
    # Mostly cards of the merchant's own city (skimmed there), the others from anywhere; ordinary amounts.
    card = rng.integers(0, config.cards, len(merchant))
    by_city = np.argsort(world.card_city, kind="stable")
    city_start = np.searchsorted(world.card_city[by_city], np.arange(len(CITIES)))
    city_count = np.bincount(world.card_city, minlength=len(CITIES))
    city = world.merchant_city[merchant]
    local = (rng.uniform(0, 1, len(merchant)) < 0.6) & (city_count[city] > 0)
    pick = city_start[city] + (rng.uniform(0, 1, len(merchant)) * np.maximum(city_count[city], 1)).astype(np.int64)
    card[local] = by_city[np.minimum(pick, len(by_city) - 1)][local]
    amount = world.habit_amount(card, merchant, rng) * rng.uniform(1, 2.5, len(merchant))
    return [_Rows(card, merchant, at, amount, np.full(len(merchant), 5, np.int8))]


def _distinct_times_per_card(rows: _Rows) -> _Rows:
    """Sort by card then time, nudging a transaction 1 microsecond later where its card already has one then."""
    rows = rows.take(np.lexsort((rows.pattern, rows.at, rows.card)))
    while True:
        tie = np.flatnonzero((rows.card[1:] == rows.card[:-1]) & (rows.at[1:] <= rows.at[:-1])) + 1
        if len(tie) == 0:
            return rows
        rows.at[tie] = rows.at[tie - 1] + 1


def generate(config: FraudConfig | None = None) -> FraudData:
    """Generate cards, merchants, transactions (sorted by time, with ground truth) and chargebacks."""
    config = config or FraudConfig()
    rng = np.random.default_rng(config.seed)
    world = _World(config, rng)
    genuine = _genuine(config, world, rng)
    rows = _Rows.concat([genuine, *_card_fraud(config, world, genuine, rng), *_merchant_fraud(config, world, rng)])
    rows = _distinct_times_per_card(rows)
    rows = rows.take(np.flatnonzero(rows.at < _micros(config.end_at)))
    rows.amount = np.round(np.clip(rows.amount, 0.5, 25_000.0), 2)
    rows = rows.take(np.lexsort((rows.card, rows.at)))
    n = len(rows.at)

    # Dirty rows: copies of random rows, re-sent as they were (duplicates) or corrupted, under new ids.
    n_dirty = int(round(config.dirty_row_share * n))
    dirty_source = np.sort(rng.choice(n, size=n_dirty, replace=False)) if n_dirty else np.empty(0, np.int64)
    dirty_kind = rng.integers(0, len(DIRTY_KINDS), n_dirty)

    transaction_number = np.arange(n, dtype=np.int64)
    number = np.concatenate([transaction_number, np.where(dirty_kind == 0, dirty_source, n + np.arange(n_dirty))])
    all_rows = rows.take(np.concatenate([np.arange(n), dirty_source]))
    merchant = all_rows.merchant
    latitude = world.merchant_lat[merchant].copy()
    longitude = world.merchant_lon[merchant].copy()
    amount = all_rows.amount.copy()
    card_valid = np.ones(len(number), dtype=bool)
    tail = slice(n, None)
    amount[tail] = np.where(dirty_kind == 1, -amount[tail], amount[tail])
    latitude[tail] = np.where(dirty_kind == 2, 123.0, latitude[tail])
    card_valid[tail] = dirty_kind != 3
    is_fraud = all_rows.pattern > 0
    is_fraud[tail] = is_fraud[tail] & (dirty_kind == 0)
    pattern = np.array(FRAUD_PATTERNS, dtype=object)[all_rows.pattern]
    kind = np.r_[np.full(n, ""), np.array(DIRTY_KINDS, dtype=object)[dirty_kind]] if n_dirty else np.full(n, "")

    card_ids = _ids("card_", all_rows.card, 6)
    category_names = np.array(CATEGORY_NAMES, dtype=object)
    transactions = pa.table({
        "transaction_id": _ids("tx_", number, 9),
        "card_id": pc.if_else(pa.array(card_valid), card_ids, pa.nulls(len(number), pa.string())),
        "merchant_id": _ids("merchant_", merchant, 5),
        "merchant_category": pa.array(category_names[world.merchant_category[merchant]], pa.string()),
        "amount": pa.array(amount, pa.float64()),
        "latitude": pa.array(latitude, pa.float64()),
        "longitude": pa.array(longitude, pa.float64()),
        "transaction_at": pa.array(all_rows.at, TIMESTAMP),
        "is_fraud": pa.array(is_fraud),
        "fraud_pattern": pa.array(pattern, pa.string()),
        "dirty_kind": pa.array(kind, pa.string()),
    })
    order = np.lexsort((number, all_rows.at))
    transactions = transactions.take(pa.array(order))

    # Chargebacks: reported 12 hours to the maturity after the transaction; some fraud is never reported.
    fraud = np.flatnonzero(rows.pattern > 0)
    reported = fraud[rng.uniform(0, 1, len(fraud)) >= config.unreported_fraud_share]
    maturity = config.label_maturity_days * MICROS_PER_DAY
    delay = 12 * MICROS_PER_HOUR + (rng.gamma(2.0, 3.5, len(reported)) * MICROS_PER_DAY).astype(np.int64)
    delay = np.minimum(delay, maturity - MICROS_PER_HOUR)
    reported_at = rows.at[reported] + delay
    cb_order = np.lexsort((reported, reported_at))
    chargebacks = pa.table({
        "transaction_id": _ids("tx_", reported[cb_order], 9),
        "is_fraud": pa.array(np.ones(len(reported), dtype=bool)),
        "reported_at": pa.array(reported_at[cb_order], TIMESTAMP),
    })

    cards = pa.table({
        "card_id": _ids("card_", np.arange(config.cards), 6),
        "home_latitude": pa.array(world.home_lat, pa.float64()),
        "home_longitude": pa.array(world.home_lon, pa.float64()),
        "issued_at": pa.array(world.issued_at, TIMESTAMP),
    })
    merchants = pa.table({
        "merchant_id": _ids("merchant_", np.arange(config.merchants), 5),
        "merchant_category": pa.array(np.array(CATEGORY_NAMES, dtype=object)[world.merchant_category], pa.string()),
        "latitude": pa.array(world.merchant_lat, pa.float64()),
        "longitude": pa.array(world.merchant_lon, pa.float64()),
        "is_online": pa.array(world.merchant_online),
    })
    return FraudData(config, cards, merchants, transactions, chargebacks)
