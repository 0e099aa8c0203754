"""Every configuration field is read by the node: a setting that does nothing is a lie.

Method (static, with :mod:`ast`): a field counts as *read* when some module of ``a2al_mcp/``
other than ``config.py`` and the test kit ``a2al_mcp/testing/`` loads an attribute of that
name — ``<expr>.<field>`` in a load context, or ``getattr(<expr>, "<field>")`` — where
``<expr>`` is not bare ``self`` or ``cls`` (outside config.py no configuration dataclass is
``self``, so this keeps a class's own attribute of the same name from counting). A field
that config.py itself reads inside a property (``NodeConfig.listen`` reads ``listen_addr``)
counts when that property is read elsewhere.

Blind spots: the scan does not know types, so another object's attribute that shares a
field's name (``limits.connections`` and a tunnel's ``tunnel.connections``) hides a dead
field; a read in code that never runs counts; generic access (``dataclasses.asdict``,
``getattr`` with a computed name) is not seen (a field read only that way fails the test and
must be listed here with the reason). Today's check catches what it was written for: a field
with no reader at all (``quic.idle_timeout_s`` and ``quic.keepalive_s`` before they were
wired, and every ``[nat]`` field).

The one known exception is ``NatConfig`` (the ``nat`` section and its fields): the NAT
issues will wire it; until then its docstring, and so docs/configuration.md, says it does
nothing yet.
"""

from __future__ import annotations

import ast
import dataclasses
import inspect
import textwrap
from pathlib import Path

from a2al_mcp import config
from a2al_mcp.protocol import timers

PACKAGE = Path(config.__file__).resolve().parent

CONFIG_CLASSES: tuple[type, ...] = (
    config.NodeConfig,
    config.DhtConfig,
    config.ExposeConfig,
    config.QuicConfig,
    config.NatConfig,
    config.MailboxConfig,
    config.OutboxConfig,
    config.LimitsConfig,
    config.HubConfig,
    config.SignalConfig,
    config.IceTableConfig,
    config.TurnServerConfig,
)

UNREAD_ON_PURPOSE: dict[str, str] = {}


def _attribute_reads(tree: ast.AST) -> set[str]:
    reads: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Attribute) and isinstance(node.ctx, ast.Load):
            if not (isinstance(node.value, ast.Name) and node.value.id in ("self", "cls")):
                reads.add(node.attr)
        elif (
            isinstance(node, ast.Call)
            and isinstance(node.func, ast.Name)
            and node.func.id == "getattr"
            and len(node.args) >= 2
            and isinstance(node.args[1], ast.Constant)
            and isinstance(node.args[1].value, str)
        ):
            reads.add(node.args[1].value)
    return reads


def _reads_outside_config() -> set[str]:
    reads: set[str] = set()
    for path in sorted(PACKAGE.rglob("*.py")):
        rel = path.relative_to(PACKAGE)
        if rel == Path("config.py") or rel.parts[0] == "testing":
            continue
        reads |= _attribute_reads(ast.parse(path.read_text(encoding="utf-8"), str(path)))
    return reads


def _property_reads(cls: type) -> dict[str, set[str]]:
    """Fields each property of ``cls`` reads from ``self``."""
    out: dict[str, set[str]] = {}
    for name, member in vars(cls).items():
        if isinstance(member, property) and member.fget is not None:
            tree = ast.parse(textwrap.dedent(inspect.getsource(member.fget)))
            out[name] = {
                n.attr
                for n in ast.walk(tree)
                if isinstance(n, ast.Attribute)
                and isinstance(n.value, ast.Name)
                and n.value.id == "self"
            }
    return out


def _unread_fields() -> list[str]:
    reads = _reads_outside_config()
    unread = []
    for cls in CONFIG_CLASSES:
        via_property = set().union(
            *(fields for prop, fields in _property_reads(cls).items() if prop in reads)
        )
        for f in dataclasses.fields(cls):
            if f.name not in reads and f.name not in via_property:
                unread.append(f"{cls.__name__}.{f.name}")
    return unread


def test_every_config_dataclass_is_checked() -> None:
    found = {
        obj
        for obj in vars(config).values()
        if isinstance(obj, type)
        and dataclasses.is_dataclass(obj)
        and obj.__module__ == config.__name__
    }
    assert found == set(CONFIG_CLASSES)


def test_every_config_field_is_read() -> None:
    unread = set(_unread_fields())
    assert unread - set(UNREAD_ON_PURPOSE) == set(), "configuration fields nothing reads"
    # an exception that got wired must leave the list (and its docstring must change)
    assert set(UNREAD_ON_PURPOSE) - unread == set()


def test_the_scan_sees_a_field_nobody_reads() -> None:
    """The method itself: reads are found through any expression but ``self``/``cls``, via
    ``getattr`` with a constant name, and not in strings or writes."""
    tree = ast.parse(
        "x = cfg.quic.keepalive_s\n"
        "y = getattr(lim, 'dht_keys')\n"
        "self.idle_timeout_s = 1\n"
        "z = self.upnp\n"
        "obj.stun_servers = ()\n"
        "'''.min_observed_peers'''\n"
    )
    assert _attribute_reads(tree) == {"quic", "keepalive_s", "dht_keys"}


def test_config_defaults_are_the_protocol_timers() -> None:
    """config.py sits below the protocol layer and cannot import the timers: its defaults
    repeat them, and this keeps the two equal."""
    assert config.QuicConfig().idle_timeout_s == timers.QUIC_IDLE_TIMEOUT_S
    assert config.QuicConfig().keepalive_s == timers.QUIC_KEEPALIVE_S
    assert config.QuicConfig().handshake_timeout_s == timers.QUIC_HANDSHAKE_TIMEOUT_S
    assert config.DhtConfig().lookup_rpc_timeout_s == timers.LOOKUP_RPC_TIMEOUT_S
    assert config.DhtConfig().republish_interval_s == timers.REPUBLISH_INTERVAL_S
