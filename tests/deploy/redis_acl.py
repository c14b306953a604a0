"""The shipped Redis users (deploy/redis/users.conf, passwords added by deploy/redis/users.sh
as docker-compose.yml runs it) in a real redis-server, for the tests."""

from __future__ import annotations

import secrets
import subprocess
from dataclasses import dataclass
from pathlib import Path

import redis
from redis.backoff import NoBackoff
from redis.retry import Retry

from tests.redis_server import RedisServer

ROOT = Path(__file__).resolve().parents[2]
RULES = ROOT / "deploy" / "redis" / "users.conf"
SCRIPT = ROOT / "deploy" / "redis" / "users.sh"
USERS = ("issuer", "builder")
DATABASE = {"issuer": 0, "builder": 1}  # as deploy/*.env.example name them


def users_script(secret_dir: Path) -> subprocess.CompletedProcess[str]:
    """users.sh run as compose runs it: the rules, then the directory of password files."""
    return subprocess.run(
        ["sh", str(SCRIPT), str(RULES), str(secret_dir)],
        capture_output=True,
        text=True,
        check=False,
    )


def connect(port: int, user: str | None, password: str | None, db: int = 0) -> redis.Redis:
    """A client that gives up at the first refusal (redis-py retries failed logins)."""
    return redis.Redis(
        port=port, username=user, password=password, db=db, retry=Retry(NoBackoff(), 0)
    )


@dataclass
class AclRedis:
    server: RedisServer
    passwords: dict[str, str]

    @classmethod
    def start(cls, work: Path) -> AclRedis:
        """A redis-server with the shipped users and a fresh password for each, made the
        way the README makes them (``print(...) > file``: a trailing newline)."""
        secret_dir = work / "secrets"
        secret_dir.mkdir()
        passwords = {user: secrets.token_urlsafe(32) for user in USERS}
        for user, password in passwords.items():
            (secret_dir / f"redis_{user}_password").write_text(password + "\n")
        made = users_script(secret_dir)
        if made.returncode != 0:
            raise RuntimeError(f"users.sh failed: {made.stderr}")
        config = work / "users.conf"
        config.write_text(made.stdout)
        # DEBUG on, as an operator may have it: the users must be refused it all the same.
        return cls(RedisServer(str(config), "--enable-debug-command", "yes"), passwords)

    def url(self, user: str) -> str:
        port, db = self.server.port, DATABASE[user]
        return f"redis://{user}:{self.passwords[user]}@127.0.0.1:{port}/{db}"

    def client(self, user: str, db: int | None = None) -> redis.Redis:
        """A client logged in as ``user``, in its service's database unless ``db`` says."""
        db = DATABASE[user] if db is None else db
        return connect(self.server.port, user, self.passwords[user], db)

    def stop(self) -> None:
        self.server.stop()
