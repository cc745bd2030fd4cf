"""Every model the pipeline trains, listed once: `reelflow train --model`'s choices, the
`reelflow_train` DAG's tasks and `reelflow_export`'s embedding models all read `MODELS`.

A model is one file in models/ (its `Recommender` subclass and dataclass config, see
models/interface.py) plus one line here naming it, the kind of data it trains and is evaluated
on (`data`: a class with a `for_run` builder, see models/training.py) and the Feast feature
service it reads (None: the lake's histories). Standard library only (and the typed settings,
themselves standard library): the DAG files import it at parse time; classes load on first use.

The student's teacher is a setting, `sequence.teacher` (REELFLOW_SEQUENCE__TEACHER, default
sasrec; gru also can: `TEACHERS`, the left-to-right models, like the student), read here once so
that the DAG's wiring (`train_<teacher> >> train_student`), `reelflow train` and the run's data
all name the same model.
"""

from __future__ import annotations

import importlib
from dataclasses import dataclass
from typing import Any

from reelflow.config import load_config

RANKER_DATA = "models.ranker_data:RankerData"  # (user, video) rows on Feast features, next day
SEQUENCE_DATA = "models.sequence_data:SequenceData"  # histories from the lake, leave-one-out


@dataclass(frozen=True)
class ModelSpec:
    model: str  # "module:Class" of the model (a models/interface.py Recommender)
    data: str  # "module:Class" of the data it trains and is evaluated on
    feature_service: str | None  # the Feast feature service it reads; None: the lake
    description: str  # what its training task does (the DAG task's documentation)
    teacher: str | None = None  # the model whose registered version it distills

    def model_class(self) -> Any:
        return _load(self.model)

    def data_class(self) -> Any:
        return _load(self.data)


MODELS: dict[str, ModelSpec] = {
    "ranker": ModelSpec(
        "models.ranker:MultiObjectiveRanker",
        RANKER_DATA,
        "ranker_v1",
        "Trains on every labelled day before the last, holds out the last, gates promotion.",
    ),
    "gru": ModelSpec(
        "models.gru:GRU4Rec",
        SEQUENCE_DATA,
        None,
        "GRU4Rec on every user's sequence through the day, leave-one-out, gated.",
    ),
    "bert4rec": ModelSpec(
        "models.bert4rec:BERT4Rec",
        SEQUENCE_DATA,
        None,
        "BERT4Rec on every user's sequence through the day, leave-one-out, gated.",
    ),
    "sasrec": ModelSpec(
        "models.sasrec:SASRec",
        SEQUENCE_DATA,
        None,
        "SASRec (causal self-attention) on every user's sequence through the day, "
        "leave-one-out, gated; the teacher of train_student by default (sequence.teacher).",
    ),
}
# The student distills one of the left-to-right next-item models above it (listed first, so the
# DAG trains the teacher before the student; models/student.py says why not BERT4Rec): the
# setting, checked here, at import, to fail loudly.
_TEACHER = load_config().sequence.teacher
TEACHERS = ("gru", "sasrec")
if _TEACHER not in TEACHERS:
    raise ValueError(
        f"REELFLOW_SEQUENCE__TEACHER={_TEACHER!r}: the student distills one of {TEACHERS}"
    )
MODELS["student"] = ModelSpec(
    "models.student:Student",
    SEQUENCE_DATA,
    None,
    f"A small model distilled from this run's {_TEACHER} version, gated like the others.",
    teacher=_TEACHER,
)


def spec(name: str) -> ModelSpec:
    if name not in MODELS:
        raise ValueError(f"unknown model {name!r}; expected one of {sorted(MODELS)}")
    return MODELS[name]


def _load(reference: str) -> Any:
    module, _, attribute = reference.partition(":")
    return getattr(importlib.import_module(module), attribute)
