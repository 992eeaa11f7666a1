# Type stubs for the compiled module kakunin._kakunin (re-exported by kakunin). Kept in step with
# python/src/*.cpp: python/tests/test_stubs.py fails when a public name is missing here.
import datetime
import decimal
import enum
from typing import Callable, ClassVar, Dict, List, Optional, Tuple, Union, overload

__version__: str

Amount = Union[decimal.Decimal, str, int]  # never float: a float is a TypeError naming the field
Timeout = Union[datetime.timedelta, float]

# ---- errors --------------------------------------------------------------------------------
class ErrorCategory(enum.Enum):
    invalid_input: ClassVar[ErrorCategory]
    invalid_state: ClassVar[ErrorCategory]
    crypto: ClassVar[ErrorCategory]
    kms: ClassVar[ErrorCategory]
    io: ClassVar[ErrorCategory]
    database: ClassVar[ErrorCategory]
    network: ClassVar[ErrorCategory]
    not_found: ClassVar[ErrorCategory]
    unauthorised: ClassVar[ErrorCategory]

class Error(Exception):
    category: str  # the ErrorCategory's name
class InvalidInputError(Error, ValueError): ...
class InvalidStateError(Error): ...
class CryptoError(Error): ...
class KmsError(Error): ...
class IoError(Error): ...
class DatabaseError(Error): ...
class NetworkError(Error): ...
class NotFoundError(Error, LookupError): ...
class UnauthorisedError(Error): ...

# ---- values --------------------------------------------------------------------------------
class Side(enum.Enum):
    buy: ClassVar[Side]
    sell: ClassVar[Side]

class Verdict(enum.Enum):
    allow: ClassVar[Verdict]
    warn: ClassVar[Verdict]
    reject: ClassVar[Verdict]

class ReasonCode(enum.Enum):
    halted: ClassVar[ReasonCode]
    audit_unavailable: ClassVar[ReasonCode]
    instrument_not_allowed: ClassVar[ReasonCode]
    counterparty_not_allowed: ClassVar[ReasonCode]
    region_not_allowed: ClassVar[ReasonCode]
    outside_trading_hours: ClassVar[ReasonCode]
    max_transaction_exceeded: ClassVar[ReasonCode]
    currency_mismatch: ClassVar[ReasonCode]
    max_order_quantity_exceeded: ClassVar[ReasonCode]
    price_collar_breached: ClassVar[ReasonCode]
    reference_price_missing: ClassVar[ReasonCode]
    order_rate_exceeded: ClassVar[ReasonCode]
    daily_notional_exceeded: ClassVar[ReasonCode]
    max_position_exceeded: ClassVar[ReasonCode]
    max_open_orders_exceeded: ClassVar[ReasonCode]
    max_working_notional_exceeded: ClassVar[ReasonCode]
    message_rate_exceeded: ClassVar[ReasonCode]
    daily_loss_limit_reached: ClassVar[ReasonCode]
    reduce_only: ClassVar[ReasonCode]
    duplicate_order_id: ClassVar[ReasonCode]
    unknown_order_id: ClassVar[ReasonCode]
    self_trade: ClassVar[ReasonCode]
    order_id_missing: ClassVar[ReasonCode]
    firm_limit_exceeded: ClassVar[ReasonCode]
    firm_lease_expired: ClassVar[ReasonCode]
    invalid_quantity: ClassVar[ReasonCode]
    invalid_price: ClassVar[ReasonCode]
    invalid_instrument: ClassVar[ReasonCode]
    notional_overflow: ClassVar[ReasonCode]
    invalid_reference_price: ClassVar[ReasonCode]
    order_field_too_long: ClassVar[ReasonCode]
    anomaly_warning: ClassVar[ReasonCode]
    anomaly_revocation: ClassVar[ReasonCode]
    certificate_expired: ClassVar[ReasonCode]
    certificate_not_yet_valid: ClassVar[ReasonCode]
    certificate_revoked: ClassVar[ReasonCode]
    revocation_status_stale: ClassVar[ReasonCode]

class Order:
    instrument: str
    counterparty: str
    side: Side
    region: str
    client_order_id: str
    reasoning: str
    @property
    def quantity(self) -> decimal.Decimal: ...
    @quantity.setter
    def quantity(self, value: Amount) -> None: ...
    @property
    def price(self) -> decimal.Decimal: ...
    @price.setter
    def price(self, value: Amount) -> None: ...
    @property
    def reference_price(self) -> Optional[decimal.Decimal]: ...
    @reference_price.setter
    def reference_price(self, value: Optional[Amount]) -> None: ...
    def __init__(self, *, instrument: str = "", counterparty: str = "", side: Side = ...,
                 quantity: Amount = 0, price: Amount = 0, region: str = "",
                 reference_price: Optional[Amount] = None, client_order_id: str = "",
                 reasoning: str = "") -> None: ...

class Decision:
    @property
    def verdict(self) -> Verdict: ...
    @property
    def allowed(self) -> bool: ...
    @property
    def reasons(self) -> List[ReasonCode]: ...
    @property
    def ts_ns(self) -> int: ...
    @property
    def score_ppm(self) -> int: ...
    @property
    def components(self) -> Dict[str, int]: ...
    def __bool__(self) -> bool: ...

class Scope:
    @property
    def version(self) -> int: ...
    @property
    def instruments(self) -> List[str]: ...
    @property
    def counterparties(self) -> List[str]: ...
    @property
    def regions(self) -> List[str]: ...
    @property
    def max_transaction(self) -> Tuple[str, decimal.Decimal]: ...
    @property
    def has_lifecycle_limits(self) -> bool: ...
    def to_json(self) -> str: ...
    def to_pretty_json(self) -> str: ...

def parse_scope_json(text: str) -> Scope: ...
def load_scope_file(path: str) -> Scope: ...

# ---- lifecycle -----------------------------------------------------------------------------
class Amend:
    client_order_id: str
    quantity: Optional[decimal.Decimal]
    price: Optional[decimal.Decimal]
    reference_price: Optional[decimal.Decimal]
    def __init__(self, client_order_id: str, *, quantity: Optional[Amount] = None,
                 price: Optional[Amount] = None, reference_price: Optional[Amount] = None) -> None: ...

class Cancel:
    client_order_id: str
    def __init__(self, client_order_id: str) -> None: ...

class ExecutionType(enum.Enum):
    ack: ClassVar[ExecutionType]
    reject: ClassVar[ExecutionType]
    fill: ClassVar[ExecutionType]
    cancelled: ClassVar[ExecutionType]
    expired: ClassVar[ExecutionType]
    mark: ClassVar[ExecutionType]

class ExecutionReport:
    type: ExecutionType
    client_order_id: str
    instrument: str
    side: Side
    quantity: decimal.Decimal
    price: decimal.Decimal
    def __init__(self, type: ExecutionType, *, client_order_id: str = "", instrument: str = "",
                 side: Side = ..., quantity: Amount = 0, price: Amount = 0) -> None: ...

class ExecutionResult:
    applied: bool
    unknown_order: bool
    order_closed: bool
    reduce_only_entered: bool
    problem: Optional[str]

class Position:
    instrument: str
    position: decimal.Decimal
    working_buy: decimal.Decimal
    working_sell: decimal.Decimal

class LifecycleState:
    positions: List[Position]
    working_orders: List[str]
    filled_today: decimal.Decimal
    working_notional: decimal.Decimal
    daily_pnl: decimal.Decimal
    reduce_only: bool

class CancelAll:
    halt_id: str
    reason: str
    by: str
    at_ns: int
    order_ids: List[str]

# ---- certificates and keys -----------------------------------------------------------------
class CertificateStatus(enum.Enum):
    valid: ClassVar[CertificateStatus]
    malformed: ClassVar[CertificateStatus]
    wrong_ca: ClassVar[CertificateStatus]
    bad_signature: ClassVar[CertificateStatus]
    invalid_chain: ClassVar[CertificateStatus]
    weak_algorithm: ClassVar[CertificateStatus]
    not_yet_valid: ClassVar[CertificateStatus]
    expired: ClassVar[CertificateStatus]
    unknown_critical_extension: ClassVar[CertificateStatus]
    no_scope: ClassVar[CertificateStatus]
    scope_not_critical: ClassVar[CertificateStatus]
    scope_invalid: ClassVar[CertificateStatus]
    not_end_entity: ClassVar[CertificateStatus]
    key_usage: ClassVar[CertificateStatus]
    revoked: ClassVar[CertificateStatus]
    crl_missing: ClassVar[CertificateStatus]
    crl_expired: ClassVar[CertificateStatus]
    crl_not_yet_valid: ClassVar[CertificateStatus]
    crl_invalid: ClassVar[CertificateStatus]
    key_mismatch: ClassVar[CertificateStatus]

class CertificateCheck:
    status: CertificateStatus
    detail: str
    ok: bool
    def __bool__(self) -> bool: ...

class AgentCertificate:
    @staticmethod
    def load_file(path: str, oid_arc: str = ...) -> AgentCertificate: ...
    @staticmethod
    def from_pem(pem: str, oid_arc: str = ...) -> AgentCertificate: ...
    @staticmethod
    def from_der(der: bytes, oid_arc: str = ...) -> AgentCertificate: ...
    der: bytes
    pem: str
    fingerprint: str
    serial: str
    not_before_ns: int
    not_after_ns: int
    agent_id: str
    subject: str
    issuer: str
    scope: Scope

class TrustAnchor:
    @staticmethod
    def load_file(path: str) -> TrustAnchor: ...
    @staticmethod
    def from_pem(pem: str) -> TrustAnchor: ...
    @staticmethod
    def from_der(der: bytes) -> TrustAnchor: ...
    der: bytes
    pem: str
    fingerprint: str
    subject: str

class CertificateRevocationList:
    @staticmethod
    def load_file(path: str) -> CertificateRevocationList: ...
    @staticmethod
    def from_pem(pem: str) -> CertificateRevocationList: ...
    @staticmethod
    def from_der(der: bytes) -> CertificateRevocationList: ...
    der: bytes
    pem: str
    this_update_ns: int
    next_update_ns: int
    revoked_serials: List[str]
    def lists(self, serial_hex: str) -> bool: ...

def verify_certificate(certificate: AgentCertificate, trust_anchor: TrustAnchor,
                       crl: Optional[CertificateRevocationList], at_ns: int) -> CertificateCheck: ...

class KeyAlgorithm(enum.Enum):
    ed25519: ClassVar[KeyAlgorithm]
    ecdsa_p256: ClassVar[KeyAlgorithm]

class KeyHandle:
    label: str
    id: str
    algorithm: KeyAlgorithm
    def __init__(self, label: str, id: str = "", algorithm: KeyAlgorithm = ...) -> None: ...

class Kms:
    def create_key(self, label: str, algorithm: KeyAlgorithm = ...) -> KeyHandle: ...
    def find_key(self, label: str) -> KeyHandle: ...
    def find_or_create_key(self, label: str, algorithm: KeyAlgorithm = ...) -> KeyHandle: ...
    def sign(self, key: KeyHandle, message: bytes) -> bytes: ...
    def public_key_der(self, key: KeyHandle) -> bytes: ...

class SoftwareKms(Kms):
    @staticmethod
    def open(directory: str, passphrase: Optional[str] = None) -> SoftwareKms: ...
    @staticmethod
    def in_memory() -> SoftwareKms: ...
    directory: str

class Pkcs11Kms(Kms):
    @staticmethod
    def open(module_path: str, token_label: str, pin: Optional[str] = None) -> Pkcs11Kms: ...

class InProcessRevocationFeed: ...

class GuardCredentials:
    def __init__(self, certificate: AgentCertificate, trust_anchor: TrustAnchor,
                 crl: Optional[CertificateRevocationList], kms: Kms, key: KeyHandle,
                 revocation_feed: Optional[InProcessRevocationFeed] = None) -> None: ...
    certificate: AgentCertificate
    trust_anchor: TrustAnchor
    crl: Optional[CertificateRevocationList]
    kms: Kms
    key: KeyHandle

# ---- audit ---------------------------------------------------------------------------------
class AuditSink:
    name: str
    def lines(self) -> List[str]: ...

class FileAuditSink(AuditSink):
    def __init__(self, path: str, *, sync_every_append: bool = True, log_id: str = "") -> None: ...
    path: str

class MemoryAuditSink(AuditSink):
    def __init__(self) -> None: ...

class PostgresAuditSink(AuditSink):
    def __init__(self, conninfo: str, *, log_id: str) -> None: ...

def init_audit_database(conninfo: str, *, owner_role: str = "kakunin_owner",
                        app_role: str = "kakunin_app") -> None: ...

class AuditTrailOptions:
    def __init__(self, sink: AuditSink, *, log_id: str = "", record_signatures: bool = True,
                 queue_capacity: int = 4096, checkpoint_every: int = 1000,
                 checkpoint_interval: Timeout = ...,
                 error_handler: Optional[Callable[[str], object]] = None) -> None: ...
    sink: AuditSink
    log_id: str
    record_signatures: bool
    queue_capacity: int

class AuditTrailCounters:
    queued: int
    durable: int
    unrecorded_rejections: int
    unrecorded_reports: int
    sink_failures: int
    healthy: bool

class AuditTrail:
    counters: AuditTrailCounters
    log_id: str
    def wait_durable(self, timeout: Timeout) -> bool: ...

class AuditCertificates:
    def __init__(self) -> None: ...
    @staticmethod
    def from_directory(directory: str) -> AuditCertificates: ...
    def add_file(self, path: str) -> None: ...
    def add_der(self, der: bytes) -> str: ...
    def __len__(self) -> int: ...
    def __contains__(self, fingerprint: str) -> bool: ...

class AuditProblem(enum.Enum):
    none: ClassVar[AuditProblem]
    empty_log: ClassVar[AuditProblem]
    malformed_line: ClassVar[AuditProblem]
    wrong_log_id: ClassVar[AuditProblem]
    seq_gap: ClassVar[AuditProblem]
    unknown_certificate: ClassVar[AuditProblem]
    bad_record_signature: ClassVar[AuditProblem]
    missing_record_signature: ClassVar[AuditProblem]
    bad_checkpoint_signature: ClassVar[AuditProblem]
    checkpoint_regressed: ClassVar[AuditProblem]
    checkpoint_beyond_records: ClassVar[AuditProblem]
    root_mismatch: ClassVar[AuditProblem]
    not_covered: ClassVar[AuditProblem]
    known_checkpoint_mismatch: ClassVar[AuditProblem]
    wrong_agent: ClassVar[AuditProblem]
    wrong_signer: ClassVar[AuditProblem]

class AuditVerifyResult:
    ok: bool
    problem: AuditProblem
    first_bad_seq: int
    line: int
    message: str
    log_id: str
    agent: str
    records: int
    signed_records: int
    checkpoints: int
    covered: int
    root: str
    uncovered_records: int
    def __bool__(self) -> bool: ...

def verify_audit_log_file(path: str, certificates: AuditCertificates, *,
                          require_record_signatures: bool = False, require_closed: bool = True,
                          expected_log_id: str = "") -> AuditVerifyResult: ...
def verify_audit_lines(lines: List[str], certificates: AuditCertificates, *,
                       require_record_signatures: bool = False, require_closed: bool = True,
                       expected_log_id: str = "") -> AuditVerifyResult: ...

# ---- the Guard -----------------------------------------------------------------------------
class Clock:
    def now_ns(self) -> int: ...
class SystemClock(Clock):
    def __init__(self) -> None: ...
class ManualClock(Clock):
    def __init__(self, start_ns: int = 0) -> None: ...
    def set(self, t_ns: int) -> None: ...
    def advance(self, delta: datetime.timedelta) -> None: ...
    def advance_ns(self, ns: int) -> None: ...

def utc(year: int, month: int, day: int, hour: int = 0, minute: int = 0, second: int = 0,
        nanos: int = 0) -> int: ...

class GuardCounters:
    checks: int
    allowed: int
    rejected: int

class GuardEventKind(enum.Enum):
    halted: ClassVar[GuardEventKind]
    resumed: ClassVar[GuardEventKind]
    revoked: ClassVar[GuardEventKind]
    rotated: ClassVar[GuardEventKind]
    crl_updated: ClassVar[GuardEventKind]

class GuardEvent:
    kind: GuardEventKind
    at_ns: int
    by: str
    reason: str
    halt_id: str

class NotificationKind(enum.Enum):
    warning: ClassVar[NotificationKind]
    escalation: ClassVar[NotificationKind]
    revocation: ClassVar[NotificationKind]
    halt: ClassVar[NotificationKind]
    incident: ClassVar[NotificationKind]

class Notification:
    kind: NotificationKind
    agent_id: str
    incident_id: str
    at_ns: int
    score_ppm: int
    summary: str
    details_json: str

class Baseline:
    def to_json(self) -> str: ...
    @staticmethod
    def from_json(json: str) -> Baseline: ...
    sha256: str

class BaselineApproval:
    def to_json(self) -> str: ...
    @staticmethod
    def from_json(json: str) -> BaselineApproval: ...

class ApprovedBaseline:
    def __init__(self, baseline: Baseline, approval: BaselineApproval) -> None: ...
    baseline: Baseline
    approval: BaselineApproval

class BaselineBuilder:
    def __init__(self, scope: Scope, agent_id: str) -> None: ...
    def start(self, t_ns: int) -> None: ...
    def observe(self, order: Order, t_ns: int) -> None: ...
    orders: int
    def finalize(self, now_ns: int) -> Baseline: ...

def approve_baseline(kms: Kms, baseline: Baseline, approver: str, approved_at_ns: int,
                     version: int = 0) -> BaselineApproval: ...

class SharedThreads:
    def __init__(self) -> None: ...
    audit_trails: int
    incident_desks: int

class Guard:
    @overload
    def __init__(self, scope: Scope, clock: Clock, *, observe: bool = True,
                 incident_thread: bool = True,
                 on_cancel_all: Optional[Callable[[CancelAll], object]] = None,
                 heartbeat_timeout: Timeout = ..., working_order_capacity: int = 0,
                 audit: Optional[AuditTrailOptions] = None,
                 notifier: Optional[Callable[[Notification], object]] = None,
                 error_handler: Optional[Callable[[str], object]] = None,
                 expiry_warning: Timeout = ...,
                 baseline: Optional[ApprovedBaseline] = None,
                 threads: Optional[SharedThreads] = None) -> None: ...
    @overload
    def __init__(self, credentials: GuardCredentials, clock: Clock, *, observe: bool = True,
                 incident_thread: bool = True,
                 on_cancel_all: Optional[Callable[[CancelAll], object]] = None,
                 heartbeat_timeout: Timeout = ..., working_order_capacity: int = 0,
                 audit: Optional[AuditTrailOptions] = None,
                 notifier: Optional[Callable[[Notification], object]] = None,
                 error_handler: Optional[Callable[[str], object]] = None,
                 expiry_warning: Timeout = ...,
                 baseline: Optional[ApprovedBaseline] = None,
                 threads: Optional[SharedThreads] = None) -> None: ...
    def check(self, order: Order) -> Decision: ...
    def amend(self, amend: Amend) -> Decision: ...
    def cancel(self, cancel: Cancel) -> Decision: ...
    def on_execution(self, report: ExecutionReport) -> ExecutionResult: ...
    def heartbeat(self) -> None: ...
    counters: GuardCounters
    halted: bool
    revoked: bool
    reduce_only_in_force: bool
    enforcing_baseline: bool
    audit: Optional[AuditTrail]
    def halt(self, reason: str, by: str) -> str: ...
    def resume(self, by: str) -> None: ...
    def reduce_only(self, reason: str, by: str) -> None: ...
    def lift_reduce_only(self, by: str) -> None: ...
    def working_orders(self) -> List[str]: ...
    def lifecycle_state(self) -> LifecycleState: ...
    def current_halt(self) -> Optional[GuardEvent]: ...
    def events(self) -> List[GuardEvent]: ...
    def rotate(self, renewed: AgentCertificate) -> None: ...
    def update_crl(self, crl: CertificateRevocationList) -> None: ...
    def process_incidents(self) -> None: ...
    def wait_incidents(self, timeout: Timeout) -> bool: ...
    def set_error_handler(self, handler: Optional[Callable[[str], object]]) -> None: ...
    def observation(self) -> Optional[BaselineBuilder]: ...
    def enforce_baseline(self, approved: ApprovedBaseline) -> None: ...
    def scope(self) -> Scope: ...
    def certificate(self) -> Optional[AgentCertificate]: ...

# ---- testing -------------------------------------------------------------------------------
class TestAuthority:
    officer: ClassVar[str]
    def __init__(self, start_ns: int = ...) -> None: ...
    clock: ManualClock
    kms: SoftwareKms
    revocation_feed: InProcessRevocationFeed
    def guard_for(self, scope: Union[Scope, str]) -> Guard: ...
    def credentials_for(self, scope: Union[Scope, str],
                        validity: Timeout = ...) -> GuardCredentials: ...
    def expired(self, scope: Union[Scope, str]) -> GuardCredentials: ...
    def not_yet_valid(self, scope: Union[Scope, str]) -> GuardCredentials: ...
    def revoked(self, scope: Union[Scope, str]) -> GuardCredentials: ...
    def wrong_ca(self, scope: Union[Scope, str]) -> GuardCredentials: ...
    def tampered(self, scope: Union[Scope, str]) -> GuardCredentials: ...
    def key_mismatch(self, scope: Union[Scope, str]) -> GuardCredentials: ...
    def renew(self, certificate: AgentCertificate) -> AgentCertificate: ...
    def revoke(self, certificate: AgentCertificate, reason: str) -> None: ...
