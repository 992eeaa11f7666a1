// FileBaselineStore: baselines and approvals as files in the state directory.
#include <filesystem>
#include <fstream>
#include <sstream>

#include "crypto/encoding.hpp"
#include "io/durable_file.hpp"
#include "kakunin/baseline.hpp"
#include "kakunin/ca.hpp"

namespace kakunin {
namespace {

namespace fs = std::filesystem;

std::string read_file(const fs::path& p) {
    std::ifstream in(p, std::ios::binary);
    if (!in) throw Error(ErrorCategory::io, "cannot read " + p.string());
    std::stringstream buf;
    buf << in.rdbuf();
    return buf.str();
}

/// Creates `p` with `content`, durable (io::write_durable); refuses to overwrite.
void create_durable(const fs::path& p, const std::string& content) {
    if (fs::exists(p))
        throw Error(ErrorCategory::invalid_state, p.string() + " exists; the store is append-only");
    io::write_durable(p.string(), content, io::Overwrite::refuse, 0600);
}

std::uint64_t latest_version(const fs::path& dir) {
    std::uint64_t v = 0;
    while (fs::exists(dir / (std::to_string(v + 1) + ".json"))) ++v;
    return v;
}

}  // namespace

FileBaselineStore::FileBaselineStore(std::string state_dir) : m_dir(std::move(state_dir)) {
    if (m_dir.empty()) throw Error(ErrorCategory::invalid_input, "baseline store: no directory");
}

StoredBaseline FileBaselineStore::put_baseline(std::string_view agent_id, std::string_view json) {
    validate_agent_id(agent_id);
    const fs::path dir = fs::path(m_dir) / "baselines" / std::string(agent_id);
    std::error_code ec;
    fs::create_directories(dir, ec);
    if (ec) throw Error(ErrorCategory::io, "cannot create " + dir.string() + ": " + ec.message());
    StoredBaseline b;
    b.agent_id = std::string(agent_id);
    b.version = latest_version(dir) + 1;
    b.json = std::string(json);
    b.sha256_hex = crypto::sha256_hex(json);
    create_durable(dir / (std::to_string(b.version) + ".json"), b.json);
    return b;
}

std::optional<StoredBaseline> FileBaselineStore::get_baseline(std::string_view agent_id,
                                                              std::uint64_t version) {
    validate_agent_id(agent_id);
    const fs::path dir = fs::path(m_dir) / "baselines" / std::string(agent_id);
    if (version == 0) version = latest_version(dir);
    const fs::path file = dir / (std::to_string(version) + ".json");
    if (version == 0 || !fs::exists(file)) return std::nullopt;
    StoredBaseline b;
    b.agent_id = std::string(agent_id);
    b.version = version;
    b.json = read_file(file);
    b.sha256_hex = crypto::sha256_hex(b.json);
    return b;
}

void FileBaselineStore::put_approval(const BaselineApproval& a) {
    validate_agent_id(a.agent_id);
    if (a.approver.empty() || a.signature.empty() || a.version == 0)
        throw Error(ErrorCategory::invalid_input,
                    "baseline approval: approver, signature and version are required");
    const fs::path dir = fs::path(m_dir) / "baselines" / a.agent_id;
    if (!fs::exists(dir / (std::to_string(a.version) + ".json")))
        throw Error(ErrorCategory::not_found, "baseline approval: " + a.agent_id +
                                                  " has no version " + std::to_string(a.version));
    const std::string base = std::to_string(a.version) + ".approval";
    for (unsigned k = 1;; ++k) {
        const fs::path file = dir / (base + (k == 1 ? "" : "." + std::to_string(k)) + ".json");
        if (!fs::exists(file)) {
            create_durable(file, to_json(a) + "\n");
            return;
        }
        if (baseline_approval_from_json(read_file(file)).approver == a.approver)
            throw Error(ErrorCategory::invalid_state, "baseline approval: " + a.approver +
                                                          " already approved version " +
                                                          std::to_string(a.version));
    }
}

std::optional<BaselineApproval> FileBaselineStore::get_approval(std::string_view agent_id,
                                                                std::uint64_t version) {
    validate_agent_id(agent_id);
    const fs::path file = fs::path(m_dir) / "baselines" / std::string(agent_id) /
                          (std::to_string(version) + ".approval.json");
    if (!fs::exists(file)) return std::nullopt;
    return baseline_approval_from_json(read_file(file));
}

}  // namespace kakunin
