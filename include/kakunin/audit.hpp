// kakunin/audit.hpp — the tamper-evident audit trail in one include: records and checkpoints,
// the Merkle tree and proofs, sinks, the log writer and the offline verifier.
//
//   #include <kakunin/audit.hpp>
//   kakunin::MemoryAuditSink sink;
//   kakunin::AuditLogWriter log(sink, clock, signer, {"agent-7"});
#pragma once

#include "kakunin/audit_merkle.hpp"
#include "kakunin/audit_record.hpp"
#include "kakunin/audit_sink.hpp"
#include "kakunin/audit_verify.hpp"
#include "kakunin/audit_writer.hpp"
