"""One settings model for every s3ops DAG: params > the DAG's deployment Variable > built-in defaults.

Each DAG declares its settings once, as a :class:`Settings` of :class:`Setting` entries (in its feature
package: ``include/<feature>/settings.py``). From that one declaration come

- the trigger form's params (:meth:`Settings.param_specs`): every param defaults to ``null``, meaning
  "use the deployment setting, else the built-in default", and its description names the built-in
  default. Airflow's form sends every param with its default, so only a ``null`` default lets a run
  started from an untouched form behave exactly like a scheduled run;
- the deployment settings: one Airflow Variable per DAG, ``s3ops_<feature>`` (:attr:`Settings.variable`),
  a JSON object whose keys are setting names, validated with the *same* JSON schema as the params;
- the merge (:meth:`Settings.resolve`): per setting, the param if set (not ``null``, not ``""``), else the
  Variable's key, else the built-in default; then every given value is checked again (NaN, infinities
  and settings that have no default and were given nowhere are refused), so a bad value fails the run
  once, naming the setting and where it came from. The built-in defaults are checked by the tests
  (:meth:`Settings.check_defaults`), not on every run;
- the table in ``docs/configuration.md`` (:func:`markdown_table`; a test keeps the doc in step).

Adding a setting to a DAG = adding one :class:`Setting` to its feature's ``SETTINGS``. A setting with
``form=False`` is a deployment setting only (in the Variable, not in the trigger form): shard sizes,
prices, notification targets, the deploy cleanup targets.

Pure: no Airflow import. The Variable is read by the tasks code (``include.dag_defaults.resolve_run_settings``),
which passes its text here; the resolved values are written to the run's artifact folder
(``settings.json``) by the run's first task, so every later task of the run (and the deletion gate)
uses exactly what the first one resolved, even if the Variable changes mid-run.
jsonschema is what Airflow validates params with; this module only adds the layering and the messages.
"""

from __future__ import annotations

import json
import math
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from functools import cached_property
from typing import Any

import jsonschema

VARIABLE_PREFIX = "s3ops_"
SETTINGS_FILE = "settings.json"
#: where a resolved value came from
SOURCES = ("param", "variable", "default")
#: marks a setting that has no built-in default: it must be given as a param or in the Variable
REQUIRED: Any = type("Required", (), {"__repr__": lambda self: "REQUIRED"})()

#: Shared JSON schemas (one definition per concept).
BUCKET = {"type": "string", "minLength": 3, "maxLength": 63, "pattern": r"^[a-z0-9][a-z0-9.-]{1,61}[a-z0-9]$"}
CONN_ID = {"type": "string", "minLength": 1, "maxLength": 250, "pattern": r"^\S+$"}
#: Days, bounded: more than 100 years would make "now minus X days" leave the calendar.
MAX_DAYS = 36_500
DAYS = {"type": "number", "minimum": 0, "maximum": MAX_DAYS}
APPROVAL = {"type": "string", "enum": ["required", "auto"]}
USERS = {"type": "array", "items": {"type": "string", "minLength": 1}, "uniqueItems": True}


class SettingsError(ValueError):
    """A missing or invalid setting; the message names it, where it came from and what to do."""


def _describe(value: Any) -> str:
    if value is REQUIRED:
        return "none (required)"
    return json.dumps(value, ensure_ascii=False)


#: How a run may change a safety setting: ``rule: (does value loosen deployed?, what a run may do)``.
#: The person who triggers a run must not be able to widen the gate that stands between them and a
#: deletion (name themselves approver, raise a limit, turn a dry run off): only the deployment's
#: Variable may.
TIGHTEN: dict[str, tuple[Callable[[Any, Any], bool], str]] = {
    "lower": (lambda value, deployed: value > deployed, "lower it"),
    "on": (lambda value, deployed: bool(deployed) and not value, "turn it on"),
    "off": (lambda value, deployed: bool(value) and not deployed, "turn it off"),
    "required": (lambda value, deployed: deployed == "required" and value != "required", "make it 'required'"),
    "subset": (lambda value, deployed: bool(deployed) and not (value and set(value) <= set(deployed)),
               "name some of the deployment's users"),
}


@dataclass(frozen=True)
class Setting:
    """One setting: its name (param name = Variable key), JSON schema, built-in default and help."""

    name: str
    schema: Mapping[str, Any]  # JSON schema of a non-null value
    default: Any
    title: str
    description: str
    form: bool = True  # shown in the trigger form as a param; False = deployment setting only
    #: False: a run's param only, never a key of the Variable (a value that means something for one run alone)
    variable: bool = True
    #: a check beyond JSON schema (raises ValueError with the reason); e.g. the notification targets' parser
    extra_check: Callable[[Any, str], object] | None = None
    #: a safety setting a run's param may only make stricter than the deployment's value (see :data:`TIGHTEN`)
    tighten: str | None = None
    #: its values may hold secrets (webhook URLs, passwords): an error names where, never what
    secret: bool = False

    def loosens(self, value: Any, deployed: Any) -> str | None:
        """What a run's ``value`` may not do to the deployment's ``deployed`` value, or None when it only
        tightens it (or this setting is no safety setting)."""
        if self.tighten is None or deployed is None or deployed is REQUIRED:
            return None
        loosens, may = TIGHTEN[self.tighten]
        return may if loosens(value, deployed) else None

    @property
    def param_schema(self) -> dict[str, Any]:
        """The schema plus ``null`` (= not set here, use the deployment setting / default)."""
        schema = dict(self.schema)
        kind = schema.get("type")
        if kind is not None:
            kinds = [kind] if isinstance(kind, str) else list(kind)
            schema["type"] = ["null", *[k for k in kinds if k != "null"]]
        if "enum" in schema and None not in schema["enum"]:
            schema["enum"] = [None, *schema["enum"]]
        return schema

    @cached_property
    def _validator(self) -> Any:
        """What ``jsonschema.validate`` builds on every call, built once; the schema itself is checked
        against its metaschema by the tests (:meth:`Settings.check_defaults`), not on every run."""
        schema = dict(self.schema)
        return jsonschema.validators.validator_for(schema)(schema, format_checker=jsonschema.FormatChecker())

    def check(self, value: Any, where: str) -> None:
        """Raise :class:`SettingsError` unless ``value`` is valid for this setting."""
        problem = _non_finite(value)
        if problem:
            raise SettingsError(f"{self.name} = {problem} (from {where}) is not a finite number")
        error = jsonschema.exceptions.best_match(self._validator.iter_errors(value))  # the one jsonschema.validate raises
        if error is not None:
            path = "".join(f"[{p!r}]" for p in error.absolute_path)
            if self.secret:  # jsonschema's message quotes the value too
                raise SettingsError(f"{self.name}{path} (from {where}) is invalid: a {type(error.instance).__name__} "
                                    f"(not shown: it may hold a secret) where {error.validator} "
                                    f"{short_json(error.validator_value, 60)} is required")
            raise SettingsError(f"{self.name}{path} = {short_json(error.instance)} (from {where}) is invalid: "
                                f"{_reason(error)}")
        if self.extra_check is not None:
            try:
                self.extra_check(value, f"{self.name} (from {where})")
            except ValueError as exc:
                raise SettingsError(str(exc)) from None


def _reason(error: Any, limit: int = 300) -> str:
    """jsonschema's message without the value it starts by quoting (shown shortened already: a list of
    4,000 globs made a message of 87 KB, in the log and the failure mail), the reason kept at its end."""
    message, quoted = str(error.message), repr(error.instance)
    if message.startswith(quoted):
        message = "it" + message[len(quoted):]
    return message if len(message) <= limit else "…" + message[-limit:]


def loads_variable(text: str, name: str) -> Any:
    """A Variable's JSON, strictly: a key given twice (``{"dry_run": true, "dry_run": false}``: which one
    did the person mean?) and any unreadable text (including a number too long for Python to read) are a
    :class:`SettingsError` naming the Variable, not a silent last-one-wins or a retried crash."""
    def no_duplicates(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
        seen: dict[str, Any] = {}
        for key, value in pairs:
            if key in seen:
                raise SettingsError(f"the Airflow Variable {name!r} gives key {key!r} twice: keep one "
                                    "(fix it in Admin → Variables)")
            seen[key] = value
        return seen

    try:
        return json.loads(text, object_pairs_hook=no_duplicates)
    except SettingsError:
        raise
    except ValueError as exc:  # JSONDecodeError, and int() of a 5,000-digit number
        raise SettingsError(f"the Airflow Variable {name!r} is not valid JSON ({exc}): fix it in Admin → "
                            "Variables") from None


def short_json(value: Any, limit: int = 120) -> str:
    """``value`` as JSON writes it (``NaN``, ``"text"``; anything else as its ``str``), cut to ``limit``
    characters: for one-line messages about a value someone gave."""
    try:
        text = json.dumps(value, ensure_ascii=True, default=str)
    except ValueError:  # an integer too long to write (Python's int-to-str limit), a circular reference
        text = f"a {type(value).__name__}"
    return text if len(text) <= limit else text[:limit] + "…"


def _non_finite(value: Any) -> str | None:
    """``"NaN"``/``"Infinity"`` if ``value`` holds a non-finite float anywhere, else None."""
    if isinstance(value, float) and not math.isfinite(value):
        return repr(value)
    if isinstance(value, Mapping):
        return next((p for p in map(_non_finite, value.values()) if p), None)
    if isinstance(value, (list, tuple)):
        return next((p for p in map(_non_finite, value) if p), None)
    return None


@dataclass(frozen=True)
class Resolved(Mapping[str, Any]):
    """The merged settings of one run (read like a dict) and, per setting, where its value came from."""

    values: Mapping[str, Any]  # type: ignore[assignment]  # a field named like Mapping.values; read as a dict
    sources: Mapping[str, str] = field(default_factory=dict)

    def __getitem__(self, name: str) -> Any:
        return self.values[name]

    def __iter__(self) -> Any:
        return iter(self.values)

    def __len__(self) -> int:
        return len(self.values)

    def to_json(self) -> dict[str, Any]:
        return {"values": dict(self.values), "sources": dict(self.sources)}

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> Resolved:
        return cls(dict(data["values"]), dict(data.get("sources") or {}))

    def describe(self) -> str:
        """One line for the task log: ``name=value (source), …``."""
        return ", ".join(f"{k}={short_json(v, 60)} ({self.sources.get(k, '?')})" for k, v in self.values.items())


@dataclass(frozen=True)
class Settings:
    """Every setting of one DAG, its Variable's name, and the merge."""

    dag_id: str
    feature: str  # the Variable is s3ops_<feature>
    entries: tuple[Setting, ...]
    #: the pinned settings a run's params may set anyway, given the params and the Variable: those the
    #: deployment itself chose for this run (deploy cleanup: one of its ``targets``, as its dispatch gives it)
    pinned_exempt: Callable[[Mapping[str, Any], Mapping[str, Any]], frozenset[str]] | None = None

    def __post_init__(self) -> None:
        names = [s.name for s in self.entries]
        if len(names) != len(set(names)):
            raise ValueError(f"{self.dag_id}: duplicate setting names {sorted(n for n in names if names.count(n) > 1)}")

    def check_defaults(self) -> None:
        """Raise :class:`SettingsError` if a built-in default breaks its own schema (a bug; tests call
        this rather than every import, which must stay fast for DAG parsing, or every run)."""
        for s in self.entries:
            try:
                jsonschema.validators.validator_for(s.schema).check_schema(dict(s.schema))
            except jsonschema.SchemaError as exc:
                raise SettingsError(f"the schema of {s.name} is not a valid JSON schema: {exc.message}") from None
            if _uses_format(s.schema):
                raise SettingsError(f"the schema of {s.name} uses 'format': jsonschema checks a format only where an "
                                    f"optional package for it is installed (Airflow's environment has more than the "
                                    f"command line's), so use 'pattern' or an extra_check instead")
            if s.default is not REQUIRED and s.default is not None:
                s.check(s.default, "the built-in default")

    @property
    def variable(self) -> str:
        return f"{VARIABLE_PREFIX}{self.feature}"

    def __getitem__(self, name: str) -> Setting:
        for s in self.entries:
            if s.name == name:
                return s
        raise KeyError(name)

    @property
    def names(self) -> list[str]:
        return [s.name for s in self.entries]

    def param_specs(self) -> dict[str, dict[str, Any]]:
        """Keyword arguments of ``airflow.sdk.Param`` for every form setting: default ``None``, the
        schema plus null, the title and a description that names the built-in default."""
        specs = {}
        for s in self.entries:
            if not s.form:
                continue
            default = ("none: set it here or in the Variable " + self.variable if s.default is REQUIRED
                       else _describe(s.default))
            tighten = f" A run may only {TIGHTEN[s.tighten][1]}, never loosen it." if s.tighten else ""
            specs[s.name] = {
                "default": None, **s.param_schema, "title": s.title,
                "description": f"{s.description} Empty = the Variable {self.variable}'s {s.name!r}, "
                               f"else the built-in default: {default}.{tighten}",
            }
        return specs

    def parse_variable(self, raw: str | Mapping[str, Any] | None) -> dict[str, Any]:
        """The Variable's JSON object, checked: unknown keys and invalid values are refused by name."""
        if raw is None:
            return {}
        if isinstance(raw, str):
            if not raw.strip():
                return {}
            raw = loads_variable(raw, self.variable)
        if not isinstance(raw, Mapping):
            raise SettingsError(f"the Airflow Variable {self.variable!r} must be a JSON object whose keys are "
                                f"setting names ({', '.join(self.names)})")
        unknown = sorted(set(raw) - set(self.names))
        if unknown:
            raise SettingsError(f"the Airflow Variable {self.variable!r} has unknown keys {unknown}; "
                                f"known: {', '.join(self.names)} (see docs/configuration.md)")
        if per_run := sorted(k for k in raw if not self[k].variable):
            raise SettingsError(f"the Airflow Variable {self.variable!r} sets {_shown_keys(per_run)}, which only a "
                                "run's param may set (it means something for one run alone; see docs/configuration.md)")
        values = dict(raw)
        for name, value in values.items():
            if value is not None:
                self[name].check(value, f"key {name!r} of the Airflow Variable {self.variable!r}")
        return values

    def resolve(self, params: Mapping[str, Any] | None, variable: str | Mapping[str, Any] | None, *,
                by_deployer: bool = False) -> Resolved:
        """Merge, per setting: the param (unless null or ``""``) > the Variable's key > the built-in
        default; validate every given value; raise :class:`SettingsError` naming the first problem.

        A param that is no form setting is refused: Airflow passes a run's conf keys into its params
        unchecked, so ``{"dryRun": true}`` through the REST API would otherwise be a real run. A param may
        only tighten a safety setting (:data:`TIGHTEN`), unless ``by_deployer``: the command line, whose
        user is the deployment."""
        params = params or {}
        form = {s.name for s in self.entries if s.form}
        stray = sorted(str(k) for k in params if k not in form and params[k] not in (None, ""))
        if stray:
            variable_only = [k for k in stray if k in self.names]
            raise SettingsError(
                f"the run's conf has keys that are not settings of this DAG: {_shown_keys(stray)}; nothing was "
                f"done. The settings a run may set: {', '.join(sorted(form))}"
                + (f"; {_shown_keys(variable_only)} only in the Airflow Variable {self.variable!r}" if variable_only
                   else "") + " (see docs/configuration.md)")
        from_variable = self.parse_variable(variable)
        pinned = self._pinned(from_variable)
        if pinned and self.pinned_exempt is not None:
            pinned -= self.pinned_exempt(params, from_variable)
        values: dict[str, Any] = {}
        sources: dict[str, str] = {}
        for s in self.entries:
            value, source = params.get(s.name) if s.form else None, "param"
            if value is None or value == "":
                value, source = from_variable.get(s.name), "variable"
            if value is None:
                value, source = s.default, "default"
            if value is REQUIRED:
                raise SettingsError(
                    f"{s.name} is not set: " + (f"type it in the trigger form (param {s.name!r}) or " if s.form else "")
                    + f"set key {s.name!r} in the Airflow Variable {self.variable!r} (see docs/configuration.md)")
            if value is not None and source != "default":  # the defaults are checked by the tests
                s.check(value, self.where(s.name, source))
                value = _as_declared(s.schema, value)
            if source == "param" and not by_deployer:
                deployed = from_variable.get(s.name)
                deployed, deployed_from = (deployed, "variable") if deployed is not None else (s.default, "default")
                if s.name in pinned and value != _as_declared(s.schema, deployed):
                    raise SettingsError(
                        f"{s.name} = {short_json(value)} (from {self.where(s.name, source)}): {s.name} is pinned by "
                        f"the deployment (key 'pinned' of the Airflow Variable {self.variable!r}), so every run uses "
                        f"{'no value' if deployed is REQUIRED else short_json(deployed)}; remove it from the run's conf, "
                        f"or change it in the Variable")
                may = s.loosens(value, deployed)
                if may:
                    raise SettingsError(
                        f"{s.name} = {short_json(value)} (from {self.where(s.name, source)}) would loosen the "
                        f"deployment's {short_json(deployed)} ({self.where(s.name, deployed_from)}): it is a "
                        f"safety setting, so a run may only {may}; change it in the Airflow Variable {self.variable!r}")
            values[s.name], sources[s.name] = value, source
        return Resolved(values, sources)

    def _pinned(self, from_variable: Mapping[str, Any]) -> set[str]:
        """The Variable's ``pinned`` names, each a setting a run could otherwise set (a typo would pin nothing)."""
        pinned = set(from_variable.get(PINNED.name) or ())
        form = {s.name for s in self.entries if s.form and s.variable}  # a param-only setting has no value to pin
        if stray := sorted(pinned - form):
            raise SettingsError(
                f"key 'pinned' of the Airflow Variable {self.variable!r} names {_shown_keys(stray)}, which "
                f"{'is' if len(stray) == 1 else 'are'} no setting a run may set and the Variable may pin; those are: "
                f"{', '.join(sorted(form))}")
        return pinned

    def where(self, name: str, source: str) -> str:
        return {"param": f"the run's param {name!r}",
                "variable": f"key {name!r} of the Airflow Variable {self.variable!r}",
                "default": f"the built-in default of {name!r}"}[source]


def _shown_keys(keys: list[str], limit: int = 10) -> str:
    """Keys as a user typed them, with control characters and look-alikes escaped (``ascii``), at most ``limit``."""
    shown = ", ".join(ascii(k[:64]) for k in keys[:limit])
    return shown + (f" and {len(keys) - limit} more" if len(keys) > limit else "")


#: Settings every DAG has (one definition each).
AWS_CONN = Setting("aws_conn_id", CONN_ID, "aws_default", "AWS connection",
                   "Airflow connection with the S3 credentials (and endpoint_url, if any).")


def _uses_format(schema: Any) -> bool:
    """Does a JSON schema use the ``format`` keyword anywhere (a property named "format" does not count)?"""
    if isinstance(schema, Mapping):
        return isinstance(schema.get("format"), str) or any(_uses_format(v) for v in schema.values())
    if isinstance(schema, list):
        return any(_uses_format(v) for v in schema)
    return False


def _notification_targets(value: Any, where: str) -> object:
    from include.core.notify import parse_targets

    return parse_targets(value, source=where)


NOTIFICATIONS = Setting("notifications", {"type": ["array", "string", "object"], "items": {"type": ["string", "object"]}},
                        [], "Notifications",
                        "Where approval requests and failures are sent: a list of notification targets, e-mail "
                        "addresses or objects (see docs/notifications.md).", form=False,
                        extra_check=_notification_targets, secret=True)
#: Read by the s3ops_housekeeping DAG (include.core.housekeeping) from every DAG's Variable.
RETENTION_DAYS = {"type": "integer", "minimum": 1, "maximum": MAX_DAYS}
ARTIFACT_RETENTION = Setting("artifact_retention_days", RETENTION_DAYS, None, "Artifact retention (days)",
                             "Run folders older than this are pruned by s3ops_housekeeping; empty = the key of "
                             "the Variable s3ops_housekeeping, else 30.", form=False)
AUDIT_RETENTION = Setting("audit_retention_days", RETENTION_DAYS, None, "Audit retention (days)",
                          "A run that deleted something keeps its deletion record (audit.json, plan.json, the "
                          "per-chunk audits naming every deleted key, the job rows its purge was approved for) "
                          "this long; empty = the key of the Variable s3ops_housekeeping, else 400.", form=False)
PINNED = Setting("pinned", {"type": "array", "items": {"type": "string", "minLength": 1, "maxLength": 64},
                             "uniqueItems": True}, [], "Pinned settings",
                 "Settings a run may not change: a run's conf or trigger form that sets one to another value than "
                 "the Variable's (or the built-in default) fails, naming it. For deployments where whoever may "
                 "trigger a run must not choose where data goes or with whose credentials, e.g. "
                 '["aws_conn_id", "bucket", "base_dir"].', form=False)
#: What every DAG's settings end with.
COMMON = (AWS_CONN, NOTIFICATIONS, ARTIFACT_RETENTION, AUDIT_RETENTION, PINNED)


def _as_declared(schema: Mapping[str, Any], value: Any) -> Any:
    """``value`` as its schema declares it: JSON schema counts ``16.0`` as an integer, and a float where
    the code expects an int (a slice, a range) failed later with a TypeError that named no setting."""
    kinds = schema.get("type")
    kinds = [kinds] if isinstance(kinds, str) else list(kinds or ())
    if isinstance(value, float) and value.is_integer() and "integer" in kinds and "number" not in kinds:
        return int(value)
    return value


def markdown_table(all_settings: Iterable[Settings]) -> str:
    """The table of ``docs/configuration.md``: one row per setting of every DAG."""
    rows = ["| DAG | param | Variable key | default | what it does |", "| --- | --- | --- | --- | --- |"]
    for settings in all_settings:
        for s in settings.entries:
            param = f"`{s.name}`" if s.form else "— (Variable only)"
            key = f"`{settings.variable}`.`{s.name}`" if s.variable else "— (param only)"
            default = _describe(s.default).replace("|", "\\|")
            text = s.description.replace("|", "\\|")
            rows.append(f"| `{settings.dag_id}` | {param} | {key} | `{default}` | {text} |")
    return "\n".join(rows)
