// kakunin/fwd.hpp — forward declarations of Kakunin's public types, for headers that only pass
// them around.
#pragma once

namespace kakunin {
class AgentCertificate;
class AuditCertificates;
class AuditLogVerifier;
class AuditLogWriter;
class AuditSink;
class AuditTrail;
class CertificateAuthority;
class CertificateRevocationList;
class Clock;
class FileAuditSink;
class LocalCa;
class LockingAuditSink;
class MemoryAuditSink;
class MerkleFrontier;
class MerkleTree;
class RevocationFeed;
class TrustAnchor;
class SystemClock;
class ManualClock;
class Currency;
class Error;
class Guard;
class Kms;
class ReasonSet;
struct AgentRegistration;
struct AuditCheckpoint;
struct AuditRecord;
struct AuditSigner;
struct CertificateCheck;
struct Decimal;
struct GuardCredentials;
struct GuardOptions;
struct IssueRequest;
struct Revocation;
struct ScopeApproval;
struct Decision;
struct KeyHandle;
struct Money;
struct Order;
struct PreTradeLimits;
struct PublicKeyInfo;
struct Scope;
struct TradingWindow;
struct Wide;
}  // namespace kakunin
