"""Fixtures for the ledger tests: the small pipeline and an enforcer over the test database."""

from __future__ import annotations

import pytest
from pymongo.database import Database

from fleet.definitions.pipeline import Pipeline, validate_pipeline
from fleet.ledger import Enforcer
from fleet.store import Document

from .pipelines import small


@pytest.fixture
def pipeline() -> Pipeline:
    return validate_pipeline(small(), "small")


@pytest.fixture
def enforcer(db: Database[Document], pipeline: Pipeline) -> Enforcer:
    return Enforcer(db, pipeline)
