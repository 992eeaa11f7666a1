// kakunin/baseline_store.hpp — where approved behaviour baselines live: versioned JSON text with
// its SHA-256, and the signed approvals of compliance officers. Small on purpose, so that a file
// store, PostgreSQL (PostgresBaselineStore in postgres.hpp) or an integrator's own store fit.
//
//   kakunin::PostgresBaselineStore store(conninfo);
//   auto b = store.put_baseline("agent-7", baseline_json);        // version 1, 2, ...
//   store.put_approval({"agent-7", b.version, "A. Officer", clock.now_ns(), signature_b64});
//   auto latest = store.get_baseline("agent-7");                  // std::optional
#pragma once

#include <cstdint>
#include <optional>
#include <string>
#include <string_view>

#include "kakunin/clock.hpp"

namespace kakunin {

/// One stored version of an agent's baseline. `json` is kept byte for byte as given.
struct StoredBaseline {
    std::string agent_id;
    std::uint64_t version = 0;  ///< 1 for the first baseline of an agent, then +1
    std::string json;
    std::string sha256_hex;  ///< lowercase hex SHA-256 of `json`'s bytes
};

/// A compliance officer's signed approval of one baseline version (see baseline.hpp:
/// approve_baseline, baseline_approval_text, check_baseline_approval).
struct BaselineApproval {
    std::string agent_id;
    std::uint64_t version = 0;
    std::string approver;  ///< the named person
    TimeNs approved_at = 0;
    std::string signature;              ///< base64, over baseline_approval_text()
    std::string baseline_sha256;        ///< lowercase hex SHA-256 of the baseline's canonical JSON
    std::string algorithm = "ed25519";  ///< "ed25519" or "ecdsa-p256"
    std::string approver_public_key;    ///< base64 SubjectPublicKeyInfo DER
    bool automatic = false;  ///< approved by a replay's --auto-approve-baseline, not a person
};

/// Threading: implementations may be called from any thread, concurrently. Calls may block on
/// storage. Errors throw kakunin::Error (io, database; invalid_input for a bad argument;
/// not_found when an approval names a baseline version that does not exist).
/// Stores are append-only: a new baseline is a new version, nothing is overwritten.
class BaselineStore {
public:
    virtual ~BaselineStore() = default;

    /// Stores `json` as the agent's next version and returns it.
    virtual StoredBaseline put_baseline(std::string_view agent_id, std::string_view json) = 0;
    /// The given version, or the latest when `version` is 0; nullopt when there is none.
    virtual std::optional<StoredBaseline> get_baseline(std::string_view agent_id,
                                                       std::uint64_t version = 0) = 0;
    /// Records an approval of an existing version (one per approver and version).
    virtual void put_approval(const BaselineApproval& approval) = 0;
    /// The approval of that version (the first recorded, when several approvers signed).
    virtual std::optional<BaselineApproval> get_approval(std::string_view agent_id,
                                                         std::uint64_t version) = 0;
};

/// The embedded default: one directory per agent under `STATE/baselines/`:
///   AGENT/N.json            the baseline text of version N, byte for byte
///   AGENT/N.approval.json   the first approval of version N (to_json(BaselineApproval))
///   AGENT/N.approval.K.json further approvers' (K = 2, 3, ...)
/// Files are written to a temporary name, fsynced and renamed; nothing is overwritten.
/// Several processes may read; one at a time writes (as for the rest of the state directory).
class FileBaselineStore final : public BaselineStore {
public:
    /// `state_dir` is the state directory (the store lives in its `baselines/`).
    explicit FileBaselineStore(std::string state_dir);
    StoredBaseline put_baseline(std::string_view agent_id, std::string_view json) override;
    std::optional<StoredBaseline> get_baseline(std::string_view agent_id,
                                               std::uint64_t version = 0) override;
    void put_approval(const BaselineApproval& approval) override;
    std::optional<BaselineApproval> get_approval(std::string_view agent_id,
                                                 std::uint64_t version) override;

private:
    std::string m_dir;
};

}  // namespace kakunin
