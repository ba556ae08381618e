"""Plausible, valid and unique identities: names, ID documents and phone numbers.

Mainland ID numbers follow GB 11643 (region code, birth date, sequence with the sex in its
parity, check character) so that the registry importer accepts them; region codes favour
Tianjin for locals and the provinces TEDA's migrant workers come from. A few residents are
foreigners with passports or hold Hong Kong/Macao or Taiwan permits.
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass

from census.privacy import resident_id_check_character
from simulator.rng import Rng, Weighted

# Common surnames, roughly by frequency (the first few cover a third of the population).
SURNAMES = Weighted([
    ("王", 7.1), ("李", 7.0), ("张", 6.7), ("刘", 5.4), ("陈", 4.5), ("杨", 3.1), ("黄", 2.2),
    ("赵", 2.3), ("吴", 2.0), ("周", 1.9), ("徐", 1.5), ("孙", 1.5), ("马", 1.4), ("朱", 1.3),
    ("胡", 1.3), ("郭", 1.2), ("何", 1.2), ("高", 1.1), ("林", 1.1), ("罗", 0.9), ("郑", 0.9),
    ("梁", 0.8), ("谢", 0.8), ("宋", 0.7), ("唐", 0.7), ("许", 0.6), ("韩", 0.6), ("冯", 0.6),
    ("邓", 0.6), ("曹", 0.6), ("彭", 0.5), ("曾", 0.5), ("肖", 0.5), ("田", 0.5), ("董", 0.5),
    ("袁", 0.4), ("潘", 0.4), ("于", 0.4), ("蒋", 0.4), ("蔡", 0.4), ("余", 0.4), ("杜", 0.4),
    ("叶", 0.4), ("程", 0.4), ("苏", 0.3), ("魏", 0.3), ("吕", 0.3), ("丁", 0.3), ("任", 0.3),
    ("沈", 0.3), ("姚", 0.3), ("卢", 0.3), ("姜", 0.3), ("崔", 0.3), ("钟", 0.3), ("谭", 0.3),
    ("陆", 0.3), ("汪", 0.2), ("范", 0.2), ("金", 0.2), ("石", 0.2), ("廖", 0.2), ("贾", 0.2),
    ("夏", 0.2), ("韦", 0.2), ("付", 0.2), ("方", 0.2), ("白", 0.2), ("邹", 0.2), ("孟", 0.2),
    ("欧阳", 0.05), ("司马", 0.02),
])
GIVEN_MALE = tuple("伟强磊军洋勇杰涛斌超明刚平辉鹏华飞鑫波宇浩凯健俊帆帅旭宁龙林建国志海峰亮成东")
GIVEN_FEMALE = tuple("芳娜敏静丽艳娟霞秀玲燕红梅莉婷雪琳晶颖倩慧洁佳欣怡萍丹璐蕾月琪瑶")
GIVEN_ANY = tuple("子文思嘉梓一雨晨宏博安乐天心")

# Region codes (first six digits) with weights: Tianjin (locals, Binhai New Area first) and the
# provinces most migrant workers in TEDA come from.
LOCAL_REGIONS = Weighted([
    ("120116", 6.0), ("120101", 1.0), ("120102", 1.0), ("120103", 1.0), ("120104", 1.0),
    ("120105", 0.8), ("120110", 0.8), ("120111", 0.8), ("120112", 0.8), ("120113", 0.6),
])
MIGRANT_REGIONS = Weighted([
    ("130102", 1.0), ("130203", 1.0), ("130602", 1.0), ("130902", 1.2), ("131102", 1.0),
    ("370102", 0.8), ("370203", 0.6), ("371302", 1.0), ("371402", 0.8), ("410102", 0.8),
    ("410305", 0.6), ("411302", 1.0), ("411502", 0.8), ("140105", 0.7), ("140202", 0.5),
    ("230102", 0.6), ("220102", 0.5), ("210102", 0.5), ("150102", 0.4), ("340104", 0.5),
    ("320102", 0.3), ("420102", 0.3), ("510104", 0.3), ("610102", 0.3), ("620102", 0.3),
])
MOBILE_PREFIXES = (
    "130", "131", "132", "133", "135", "136", "137", "138", "139", "150", "151", "152", "153",
    "155", "156", "157", "158", "159", "166", "173", "175", "176", "177", "178", "180", "181",
    "182", "183", "185", "186", "187", "188", "189", "191", "198", "199",
)


@dataclass(frozen=True)
class Foreign:
    """How people of one nationality are named and documented."""

    country: str
    given: tuple[str, ...]
    family: tuple[str, ...]
    passport_letters: str
    passport_digits: int
    dial_code: str
    mobile_lead: str


NATIONALITIES = (
    Foreign("KR", ("Min-jun", "Seo-yeon", "Ji-ho", "Ha-eun", "Do-yun", "Su-bin"),
            ("Kim", "Lee", "Park", "Choi", "Jung"), "M", 8, "82", "10"),
    Foreign("JP", ("Haruto", "Yui", "Sota", "Hina", "Ren", "Aoi"),
            ("Sato", "Suzuki", "Takahashi", "Tanaka", "Watanabe"), "TK", 7, "81", "90"),
    Foreign("US", ("James", "Emily", "Michael", "Sarah", "David", "Jessica"),
            ("Smith", "Johnson", "Brown", "Miller", "Davis"), "", 9, "1", "2"),
    Foreign("DE", ("Lukas", "Anna", "Jonas", "Lea", "Felix", "Marie"),
            ("Muller", "Schmidt", "Schneider", "Fischer", "Weber"), "C", 8, "49", "15"),
    Foreign("RU", ("Dmitry", "Anastasia", "Ivan", "Olga", "Sergey", "Elena"),
            ("Ivanov", "Petrova", "Smirnov", "Kuznetsova", "Popov"), "", 9, "7", "9"),
    Foreign("IN", ("Aarav", "Priya", "Rohan", "Ananya", "Vikram", "Sneha"),
            ("Sharma", "Patel", "Singh", "Kumar", "Gupta"), "J", 7, "91", "98"),
)


@dataclass(frozen=True)
class Identity:
    """A person's name and identity document."""

    name: str
    id_type: str
    id_number: str
    phone: str
    sex: str  # "m" or "f"
    birth: dt.date
    nationality: str  # "CN" or an ISO country code


class IdentityFactory:
    """Makes identities; ID numbers and phone numbers are unique within a run."""

    def __init__(self, rng: Rng, reference_date: dt.date) -> None:
        self._rng = rng
        self._reference = reference_date
        self._used_ids: set[str] = set()
        self._used_phones: set[str] = set()

    def birth_date(self, age: int) -> dt.date:
        """A birth date giving the age on the reference date (never in the future)."""
        days = int(age * 365.25) + self._rng.randint(0, 364)
        born = self._reference - dt.timedelta(days=days)
        return min(born, dt.date.today() - dt.timedelta(days=1))

    def phone(self) -> str:
        """A unique mainland mobile number."""
        while True:
            number = self._rng.choice(MOBILE_PREFIXES) + f"{self._rng.randint(0, 99_999_999):08d}"
            if number not in self._used_phones:
                self._used_phones.add(number)
                return number

    def chinese_name(self, sex: str) -> str:
        """A surname and a one- or two-character given name."""
        pool = GIVEN_MALE if sex == "m" else GIVEN_FEMALE
        given = self._rng.choice(pool)
        if self._rng.chance(0.7):
            given = (self._rng.choice(GIVEN_ANY) if self._rng.chance(0.4) else
                     self._rng.choice(pool)) + given
        return SURNAMES.draw(self._rng) + given

    def resident_id(self, region: str, birth: dt.date, sex: str) -> str:
        """A unique GB 11643 ID number (odd sequence for men, even for women)."""
        sequence = self._rng.randint(0, 499) * 2 + (1 if sex == "m" else 0)
        for _attempt in range(500):
            first17 = f"{region}{birth:%Y%m%d}{sequence:03d}"
            if first17 not in self._used_ids:
                self._used_ids.add(first17)
                return first17 + resident_id_check_character(first17)
            sequence = (sequence + 2) % 1000
        raise RuntimeError(f"no free ID sequence for {region} born {birth}")  # 500 same-day twins

    def person(self, age: int, *, local: bool, with_phone: bool = True,
               foreign_share: float = 0.012) -> Identity:
        """A whole identity; a small share are foreigners or permit holders."""
        sex = "m" if self._rng.chance(0.5) else "f"
        birth = self.birth_date(age)
        roll = self._rng.random()
        if age >= 18 and roll < foreign_share:
            return self._foreigner(sex, birth)
        if age >= 18 and roll < foreign_share + 0.004:
            permit = "hk_macao_permit" if self._rng.chance(0.6) else "taiwan_permit"
            number = (f"H{self._rng.randint(0, 99_999_999):08d}" if permit == "hk_macao_permit"
                      else f"{self._rng.randint(0, 99_999_999):08d}")
            number = self._unique(number)
            phone = self.phone() if with_phone else ""
            return Identity(self.chinese_name(sex), permit, number, phone, sex, birth, "CN")
        region = (LOCAL_REGIONS if local else MIGRANT_REGIONS).draw(self._rng)
        number = self.resident_id(region, birth, sex)
        phone = self.phone() if with_phone else ""
        return Identity(self.chinese_name(sex), "resident_id_card", number, phone, sex, birth, "CN")

    def _foreigner(self, sex: str, birth: dt.date) -> Identity:
        """A foreign resident with a passport and often an international phone."""
        nation = self._rng.choice(NATIONALITIES)
        name = f"{self._rng.choice(nation.given)} {self._rng.choice(nation.family)}"
        digits = self._rng.randint(0, 10**nation.passport_digits - 1)
        number = self._unique(f"{nation.passport_letters}{digits:0{nation.passport_digits}d}")
        if self._rng.chance(0.6):
            phone = self.phone()
        else:
            phone = f"+{nation.dial_code}{nation.mobile_lead}{self._rng.randint(0, 99_999_999):08d}"
        return Identity(name, "passport", number, phone, sex, birth, nation.country)

    def _unique(self, number: str) -> str:
        """Make a document number unique by bumping its digits."""
        while number in self._used_ids:
            head = number.rstrip("0123456789")
            tail = number[len(head):]
            number = f"{head}{(int(tail) + 1) % 10 ** len(tail):0{len(tail)}d}"
        self._used_ids.add(number)
        return number
