"""Every setting and its default, in one typed object read from ``FLEET_*`` variables.

| variable               | default                          | meaning |
|------------------------|----------------------------------|---------|
| FLEET_MONGO_URL        | mongodb://127.0.0.1:27027/       | MongoDB-wire store; unset = the local FerretDB |
| FLEET_MONGO_DB         | fleet                            | database name |
| FLEET_BROKER_URL       | redis://127.0.0.1:6390/0         | Celery broker and lock store; unset = local Redis |
| FLEET_PROTOCOLS_DIR    | protocols                        | folder holding the shared protocols file |
| FLEET_PROTOCOLS_MAX_BYTES | 1048576 (1 MiB)               | a larger protocols file is refused before parsing |
| FLEET_INSTRUCTIONS_DIR | instructions                     | folder of the agents' instructions files (a spec's `instructions` is relative to it) |
| FLEET_PIPELINE         | (built-in default pipeline)      | ``module:attribute`` or a YAML/JSON file |
| FLEET_CATALOGUE        | (built-in 52-agent catalogue)    | ``module:attribute`` or a YAML/JSON file |
| FLEET_DEBUG            | false                            | add the decision trace to every heartbeat log |
| FLEET_HOME             | .fleet                           | local state: service data, logs, cached binaries |
| FLEET_DAY_SECONDS      | 86400                            | length of one schedule "day"; 120 replays a day in 2 minutes |
| FLEET_SIM_FAILURE_RATE | 0.0                              | share of simulated external calls that fail (demo) |
| FLEET_SIM_LATENCY_S    | 0.05                             | latency of one simulated lookup (demo handlers) |
| FLEET_STORE_SQLITE_DIR | (the local FerretDB's data folder) | SQLite folder of the FerretDB in use, so fleet can index it; unset for MongoDB |
| FLEET_RETENTION_DAYS   | 14                               | claims, heartbeats, refusals, failures, task events and probes older than this are pruned |
| FLEET_LOCK_TTL_S       | 30                               | agent lock lease (s), renewed every third of it: a dead worker blocks its agent this long |
| FLEET_CANCEL_ON_CONNECTION_LOSS | false                   | cut running heartbeats when the broker connection drops (Celery's ``worker_cancel_long_running_tasks_on_connection_loss``) |
| FLEET_TASK_EVENTS      | false                            | workers send Celery task events from the start (Flower turns them on anyway while it runs; each event is a Redis publish on every task) |
| FLEET_WAKE            | true                             | wake an agent when a bet arrives at a stage it polls (fleet-wide switch) |
| FLEET_WAKE_MIN_GAP_S   | 1.0                              | at most one wake per agent per this many seconds (coalesces bursts) |
| FLEET_WAKE_MAX_CONCURRENT | 8                             | no wake is sent while this many heartbeats run or wait to start, fleet-wide |
| FLEET_WAKE_EXPIRES_S   | 60                               | a wake not started within this long is dropped (the schedule still runs) |
| FLEET_BEAT_LOCK_TTL_S  | 10                               | a dead active beat's lock lapses after this long; a standby then takes over |
| FLEET_FLOWER_PORT      | 5555                             | Flower's port (``flowerconfig.py`` passes it to Flower) |
| FLEET_FLOWER_ADDRESS   | 127.0.0.1                        | address Flower binds (``flowerconfig.py``); keep it on loopback unless a proxy guards it |
| FLEET_FLOWER_USER      | fleet                            | Flower basic-auth user |
| FLEET_FLOWER_PASSWORD  | (none: Flower refuses to start; the demo uses ``fleet``) | Flower basic-auth password, read from the environment (never argv) |
| FLEET_MCP_SECRET       | (unset: `fleet mcp` generates FLEET_HOME/mcp_secret) | HMAC key (32+ bytes) signing agent tokens; never logged or printed; set it when the fleet spans hosts |
| FLEET_MCP_KEY_ID       | k1                               | id of the current signing key; change it with the secret to rotate (older tokens stop working) |
| FLEET_MCP_AUDIENCE     | fleet-mcp                        | the ``aud`` every token must name (this server); give each server its own when several share a secret |
| FLEET_MCP_ISSUER       | fleet                            | the ``iss`` every token must carry (who mints them) |
| FLEET_MCP_TOKEN_MAX_TTL_S | 86400 (a day)                 | longest token lifetime (``exp - iat``) the server accepts and ``fleet token`` mints |
| FLEET_MCP_REJECTIONS_PER_MIN | 10                         | refused calls with a bad token stored one by one per source and minute (per server process); beyond, only counted |
| FLEET_MCP_HOST         | 127.0.0.1                        | address `fleet mcp` listens on (streamable HTTP) |
| FLEET_MCP_PORT         | 8765                             | port `fleet mcp` listens on |
| FLEET_MCP_URL          | http://HOST:PORT/mcp             | where agents and heartbeats reach the MCP server |
| FLEET_WEB_HOST         | 127.0.0.1                        | address the web console (``fleet web``) binds |
| FLEET_WEB_PORT         | 8089                             | its port |
| FLEET_WEB_USER         | fleet                            | its basic-auth user |
| FLEET_WEB_PASSWORD     | fleet                            | its basic-auth password (read from the environment, never a command-line flag); the default is refused off loopback |
| FLEET_WEB_REFRESH_S    | 3                                | how often its pages refresh their figures |
"""

from __future__ import annotations

from functools import lru_cache
from pathlib import Path
from urllib.parse import urlsplit, urlunsplit

from pydantic import Field, SecretStr, ValidationError, field_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

from fleet.constants import AGENT_LOCK_TTL_S, MAX_PROTOCOLS_BYTES, MAX_RETENTION_DAYS, RETENTION_DAYS
from fleet.errors import SettingsError

#: Ports of the local services the project starts itself (not the standard ones,
#: so a developer's own MongoDB or Redis is never touched).
LOCAL_MONGO_PORT = 27027
LOCAL_REDIS_PORT = 6390
#: The password a fresh install and the demo use (web console, Flower): fine on a laptop's
#: loopback, nowhere else; both warn or refuse when it is used elsewhere.
DEMO_PASSWORD = "fleet"


class Settings(BaseSettings):
    """fleet's configuration; see the module docstring for every variable."""

    model_config = SettingsConfigDict(env_prefix="FLEET_", extra="ignore")

    mongo_url: str = f"mongodb://127.0.0.1:{LOCAL_MONGO_PORT}/"
    mongo_db: str = "fleet"
    broker_url: str = f"redis://127.0.0.1:{LOCAL_REDIS_PORT}/0"
    protocols_dir: Path = Path("protocols")
    protocols_max_bytes: int = Field(default=MAX_PROTOCOLS_BYTES, gt=0)
    instructions_dir: Path = Path("instructions")
    pipeline: str | None = None
    catalogue: str | None = None
    debug: bool = False
    home: Path = Path(".fleet")
    day_seconds: float = Field(default=86400.0, gt=0)
    sim_failure_rate: float = Field(default=0.0, ge=0.0, le=1.0)
    sim_latency_s: float = Field(default=0.05, ge=0.0, le=60.0)
    store_sqlite_dir: Path | None = None
    retention_days: float = Field(default=RETENTION_DAYS, gt=0, le=MAX_RETENTION_DAYS)
    lock_ttl_s: float = Field(default=AGENT_LOCK_TTL_S, ge=1, le=600)
    cancel_on_connection_loss: bool = False
    task_events: bool = False
    wake: bool = True
    wake_min_gap_s: float = Field(default=1.0, ge=0.0, le=3600.0)
    wake_max_concurrent: int = Field(default=8, ge=1, le=10000)
    wake_expires_s: float = Field(default=60.0, ge=1.0, le=86400.0)
    beat_lock_ttl_s: float = Field(default=10.0, ge=1.0, le=3600.0)
    flower_port: int = Field(default=5555, gt=0, lt=65536)
    flower_address: str = "127.0.0.1"
    flower_user: str = "fleet"
    flower_password: str | None = None
    mcp_secret: SecretStr | None = None  # SecretStr: repr() and logs show ********
    mcp_key_id: str = Field(default="k1", min_length=1, max_length=64)
    mcp_audience: str = Field(default="fleet-mcp", min_length=1, max_length=200)
    mcp_issuer: str = Field(default="fleet", min_length=1, max_length=200)
    mcp_token_max_ttl_s: float = Field(default=86400.0, ge=1.0, le=30 * 86400.0)
    mcp_rejections_per_min: int = Field(default=10, ge=0, le=10000)
    mcp_host: str = "127.0.0.1"
    mcp_port: int = Field(default=8765, gt=0, lt=65536)
    mcp_url: str | None = None
    web_host: str = "127.0.0.1"
    web_port: int = Field(default=8089, gt=0, lt=65536)
    web_user: str = Field(default="fleet", min_length=1)
    web_password: str = Field(default=DEMO_PASSWORD, min_length=1)
    web_refresh_s: float = Field(default=3.0, ge=0.5, le=3600)

    @field_validator("mongo_url")
    @classmethod
    def _mongo_scheme(cls, value: str) -> str:
        if not value.startswith(("mongodb://", "mongodb+srv://")):
            raise ValueError("must start with mongodb:// or mongodb+srv://")
        return value

    @field_validator("broker_url")
    @classmethod
    def _redis_scheme(cls, value: str) -> str:
        if not value.startswith(("redis://", "rediss://", "unix://")):
            raise ValueError("must start with redis://, rediss:// or unix://")
        return value

    @property
    def local_mongo(self) -> bool:
        """True when the project should start its own FerretDB (no URL was given)."""
        return "mongo_url" not in self.model_fields_set

    @property
    def sqlite_dir(self) -> Path | None:
        """The SQLite folder of the FerretDB in use, when fleet knows it (see fleet.store.indexes)."""
        if self.store_sqlite_dir is not None:
            return self.store_sqlite_dir
        return ferretdb_data_dir(self.home) if self.local_mongo else None

    @property
    def mcp_endpoint(self) -> str:
        """The MCP server's URL as agents reach it (``FLEET_MCP_URL``, else host and port)."""
        return self.mcp_url or f"http://{self.mcp_host}:{self.mcp_port}/mcp"

    @property
    def web_url(self) -> str:
        """Where the web console answers (a wildcard bind is shown as loopback)."""
        host = "127.0.0.1" if self.web_host in {"0.0.0.0", "::", ""} else self.web_host
        return f"http://{host}:{self.web_port}/"

    @property
    def flower_url(self) -> str:
        """Where Flower answers (a wildcard bind is shown as loopback)."""
        host = "127.0.0.1" if self.flower_address in {"0.0.0.0", "::", ""} else self.flower_address
        return f"http://{host}:{self.flower_port}/"

    @property
    def local_redis(self) -> bool:
        """True when the project should start its own Redis (no URL was given)."""
        return "broker_url" not in self.model_fields_set


def ferretdb_data_dir(home: Path) -> Path:
    """Where the local FerretDB under ``home`` keeps its SQLite files."""
    return (home / "services" / "ferretdb" / "data").resolve()


def mask_url(url: str) -> str:
    """Return ``url`` with any password replaced by ``***``, safe to print or log."""
    try:
        parts = urlsplit(url)
    except ValueError:
        return "<unparseable url>"
    if parts.password is None:
        return url
    netloc = parts.netloc.rsplit("@", 1)[1]
    user = parts.username or ""
    return urlunsplit(parts._replace(netloc=f"{user}:***@{netloc}"))


def load_settings() -> Settings:
    """Read settings from the environment; a bad value raises one :class:`SettingsError`."""
    try:
        return Settings()
    except ValidationError as exc:
        first = exc.errors()[0]
        field = str(first["loc"][0]) if first["loc"] else "?"
        raise SettingsError(f"FLEET_{field.upper()}", first["msg"]) from None


@lru_cache(maxsize=1)
def get_settings() -> Settings:
    """The process-wide settings, read once."""
    return load_settings()
