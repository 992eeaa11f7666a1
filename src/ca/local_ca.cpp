// LocalCa: a CA over any Kms, state in a directory (or memory). All times come from the Clock.
#include <botan/ber_dec.h>
#include <botan/der_enc.h>
#include <botan/system_rng.h>
#include <botan/x509_ca.h>
#include <botan/x509_ext.h>

#include <dirent.h>
#include <sys/stat.h>

#include <algorithm>
#include <cerrno>
#include <cstdio>
#include <cstring>
#include <fstream>
#include <map>
#include <mutex>
#include <sstream>

#include <nlohmann/json.hpp>

#include "crypto/encoding.hpp"
#include "crypto/signature.hpp"
#include "io/durable_file.hpp"
#include "kakunin/audit_record.hpp"
#include "kakunin/audit_sink.hpp"
#include "kakunin/audit_verify.hpp"
#include "kakunin/audit_writer.hpp"
#include "kakunin/ca.hpp"
#include "kms/kms_botan_key.hpp"
#include "x509/x509_internal.hpp"

namespace kakunin {
namespace {

using json = nlohmann::json;

// ---- files ------------------------------------------------------------------------------------

bool exists(const std::string& path) {
    struct stat st;
    return ::stat(path.c_str(), &st) == 0;
}

void make_dir(const std::string& path) {
    if (::mkdir(path.c_str(), 0700) != 0 && errno != EEXIST)
        throw Error(ErrorCategory::io, "cannot create " + path + ": " + std::strerror(errno));
}

std::string read_text(const std::string& path) {
    std::ifstream in(path, std::ios::binary);
    if (!in) throw Error(ErrorCategory::io, "cannot read " + path);
    std::stringstream buf;
    buf << in.rdbuf();
    return buf.str();
}

/// The CA's files are made durable like every other file (io::write_durable): a reader never
/// sees half a file, and a file the CA wrote survives a crash.
void write_atomic(const std::string& path, const std::string& content) {
    io::write_durable(path, content);
}

std::vector<std::string> list_dir(const std::string& dir, const std::string& suffix) {
    std::vector<std::string> out;
    DIR* d = ::opendir(dir.c_str());
    if (d == nullptr) return out;
    while (const dirent* e = ::readdir(d)) {
        const std::string name = e->d_name;
        if (name.size() > suffix.size() &&
            name.compare(name.size() - suffix.size(), suffix.size(), suffix) == 0)
            out.push_back(name);
    }
    ::closedir(d);
    std::sort(out.begin(), out.end());
    return out;
}

std::string normalise_serial(std::string_view hex) {
    const auto bytes = crypto::from_hex(hex, "serial");
    if (bytes.empty()) throw Error(ErrorCategory::invalid_input, "serial: empty");
    return crypto::to_hex(bytes);
}

/// RFC 5280 reasonCode from the first word of a free-text reason ("keyCompromise: ...").
Botan::CRL_Code reason_code(std::string_view reason) {
    std::string word;
    for (char c : reason) {
        if (c == ':' || c == ' ' || c == ',') break;
        if (c != '_' && c != '-')
            word.push_back(static_cast<char>(std::tolower(static_cast<unsigned char>(c))));
    }
    if (word == "keycompromise") return Botan::KEY_COMPROMISE;
    if (word == "cacompromise") return Botan::CA_COMPROMISE;
    if (word == "affiliationchanged") return Botan::AFFILIATION_CHANGED;
    if (word == "superseded") return Botan::SUPERSEDED;
    if (word == "cessationofoperation") return Botan::CESSATION_OF_OPERATION;
    if (word == "privilegewithdrawn") return Botan::PRIVLEDGE_WITHDRAWN;
    return Botan::UNSPECIFIED;
}

/// A CRL entry dated by the Clock (Botan's CRL_Entry(cert, reason) would read the system clock).
Botan::CRL_Entry crl_entry(const std::string& serial_hex, TimeNs at, Botan::CRL_Code code) {
    const auto bytes = crypto::from_hex(serial_hex, "serial");
    Botan::Extensions ext;
    ext.add(new Botan::Cert_Extension::CRL_ReasonCode(code));
    std::vector<std::uint8_t> der;
    Botan::DER_Encoder(der)
        .start_cons(Botan::SEQUENCE)
        .encode(Botan::BigInt(bytes.data(), bytes.size()))
        .encode(Botan::X509_Time(x509::to_time_point(at)))
        .start_cons(Botan::SEQUENCE)
        .encode(ext)
        .end_cons()
        .end_cons();
    Botan::CRL_Entry entry;
    Botan::BER_Decoder(der).decode(entry).verify_end();
    return entry;
}

json revocation_json(const Revocation& r) {
    return {{"serial", r.serial},
            {"agent_id", r.agent_id},
            {"reason", r.reason},
            {"revoked_at_ns", r.revoked_at}};
}

const char* crl_reason_name(Botan::CRL_Code code) {
    switch (code) {
        case Botan::KEY_COMPROMISE: return "keyCompromise";
        case Botan::CA_COMPROMISE: return "cACompromise";
        case Botan::AFFILIATION_CHANGED: return "affiliationChanged";
        case Botan::SUPERSEDED: return "superseded";
        case Botan::CESSATION_OF_OPERATION: return "cessationOfOperation";
        case Botan::PRIVLEDGE_WITHDRAWN: return "privilegeWithdrawn";
        default: return "unspecified";
    }
}

std::string b64(const std::vector<std::uint8_t>& bytes) { return crypto::base64_encode(bytes); }

/// The CA log's name for its records and checkpoints (DESIGN §5: one log per signer).
constexpr const char* ca_log_id = "ca";

/// Events the CA writes itself; record_event() refuses them so that a caller cannot put a
/// record in the CA log that looks like one of the CA's own acts.
bool reserved_for_ca(std::string_view event) {
    for (std::string_view e :
         {audit_event::ca_initialised, audit_event::agent_registered, audit_event::scope_approved,
          audit_event::certificate_issued, audit_event::certificate_revoked,
          audit_event::crl_issued, audit_event::log_truncated_tail, audit_event::log_recovered,
          audit_event::log_gap, audit_event::log_accepted})
        if (event == e) return true;
    // What a Guard decides and applies belongs in the agent's log, never in the CA's.
    for (std::string_view prefix : {"order.", "amend.", "cancel.", "execution."})
        if (event.substr(0, prefix.size()) == prefix) return true;
    return false;
}

/// One CA log record waiting to be written.
struct CaEvent {
    std::string_view event;
    std::string payload;  ///< canonical JSON object
};

/// Serialises a payload; names what is not valid UTF-8 instead of letting nlohmann's exception
/// escape (a payload must be valid UTF-8 to be canonical JSON).
std::string dump_payload(const json& j, std::string_view event) {
    try {
        return j.dump();
    } catch (const json::exception& e) {
        throw Error(ErrorCategory::invalid_input,
                    std::string(event) + " record: a text is not valid UTF-8 (" + e.what() + ")");
    }
}

/// A record's JSON form (kakunin::to_json), with invalid UTF-8 reported as bad input.
template <class T>
json as_json(const T& value, std::string_view what) {
    try {
        return json::parse(to_json(value));
    } catch (const json::exception& e) {
        throw Error(ErrorCategory::invalid_input,
                    std::string(what) + ": a text is not valid UTF-8 (" + e.what() + ")");
    }
}

json certificate_json(const AgentCertificate& c, std::string_view approver, TimeNs approved_at) {
    return {{"agent", c.agent_id()},
            {"serial", c.serial()},
            {"subject", c.subject()},
            {"issuer", c.issuer()},
            {"not_before_ns", c.not_before()},
            {"not_after_ns", c.not_after()},
            {"scope_sha256", scope_sha256_hex(c.scope())},
            {"simulation", c.is_simulation()},
            {"approved_by", std::string(approver)},
            {"approved_at_ns", approved_at},
            {"fingerprint", c.fingerprint()},
            {"certificate", b64(c.der())}};
}

json crl_json(const CertificateRevocationList& crl) {
    return {{"this_update_ns", crl.this_update()},
            {"next_update_ns", crl.next_update()},
            {"revoked_serials", crl.revoked_serials()},
            {"crl", b64(crl.der())}};
}

}  // namespace

struct LocalCa::Impl {
    std::shared_ptr<Kms> kms;
    const Clock& clock;
    LocalCaOptions options;
    KeyHandle ca_key;
    std::shared_ptr<const Botan::X509_Certificate> ca_cert;
    std::vector<std::uint8_t> ca_der;

    /// Recursive: a LocalCa::Hold keeps it across the calls its thread makes meanwhile.
    mutable std::recursive_mutex mutex;
    std::map<std::string, AgentRegistration, std::less<>> registrations;
    std::map<std::string, ApprovedScope, std::less<>> approvals;
    std::vector<AgentCertificate> issued;  // oldest first
    std::vector<Revocation> revoked;
    std::optional<CertificateRevocationList> crl;

    // The CA log (declared after kms: the writer signs through it and goes first).
    std::string log_path;  ///< empty in memory
    std::unique_ptr<AuditSink> log_sink;
    FileAuditSink* file_sink = nullptr;  ///< log_sink, for a state directory
    std::unique_ptr<AuditLogWriter> log;
    std::string log_failure;  ///< why the log can no longer be written, or empty
    /// Every line of the log is verified once, in order, whoever wrote it; the records other
    /// processes wrote are applied to what the CA acts on (lines_applied: lines read so far).
    AuditCertificates log_certs;
    std::unique_ptr<AuditLogVerifier> log_verifier;
    std::uint64_t lines_applied = 0;
    bool initialised = false;  ///< the log's first record, ca.initialised, was read
    /// Turns in progress on this CA (nested ones: a Hold's thread), and the file lock they share.
    unsigned turns = 0;
    std::optional<FileAuditSink::Hold> file_hold;

    Impl(std::shared_ptr<Kms> k, const Clock& c, LocalCaOptions o)
        : kms(std::move(k)), clock(c), options(std::move(o)) {}

    bool persistent() const { return !options.state_dir.empty(); }
    std::string path(const std::string& rel) const { return options.state_dir + "/" + rel; }

    void save_config() const {
        json j = {{"kind", "kakunin-ca/v1"},
                  {"key_label", options.key_label},
                  {"algorithm", to_string(ca_key.algorithm)},
                  {"oid_arc", options.oid_arc}};
        write_atomic(path("ca.json"), j.dump(2) + "\n");
    }

    static json revocations_json(const std::vector<Revocation>& list) {
        json arr = json::array();
        for (const auto& r : list) arr.push_back(revocation_json(r));
        return arr;
    }

    void save_revocations(const std::vector<Revocation>& list) const {
        if (!persistent()) return;
        write_atomic(path("revocations.json"), revocations_json(list).dump(2) + "\n");
    }

    void install_crl(const CertificateRevocationList& c) {
        if (persistent()) write_atomic(path("crl.pem"), c.pem());
        crl = c;
    }

    /// A CRL signed now over the current one plus `new_entries`; not yet installed. Caller
    /// holds the mutex.
    CertificateRevocationList make_crl(const std::vector<Botan::CRL_Entry>& new_entries) {
        kms_botan::KmsPrivateKey key(*kms, ca_key);
        Botan::System_RNG rng;
        Botan::X509_CA ca(*ca_cert, key, "SHA-256", rng);
        const auto now = x509::to_time_point(clock.now_ns());
        Botan::X509_CRL out;
        if (crl)
            out = ca.update_crl(*crl->impl().crl, new_entries, rng, now, options.crl_validity);
        else if (new_entries.empty())
            out = ca.new_crl(rng, now, options.crl_validity);
        else
            out = ca.update_crl(ca.new_crl(rng, now, options.crl_validity), new_entries, rng, now,
                                options.crl_validity);
        return CertificateRevocationList::from_der(out.BER_encode());
    }

    /// Issues, records and installs a CRL with no new entry. Caller holds the mutex.
    CertificateRevocationList reissue_crl() {
        const CertificateRevocationList next = make_crl({});
        write_log(
            {{audit_event::crl_issued, dump_payload(crl_json(next), audit_event::crl_issued)}});
        install_crl(next);
        return next;
    }

    // ---- the CA log ------------------------------------------------------------------------

    /// Opens STATE/audit/ca.jsonl (or a memory sink). The file is locked only during a turn
    /// (below): the command line and an in-process CA take turns on one state directory.
    void open_log() {
        if (persistent()) {
            make_dir(path("audit"));
            log_path = path("audit/ca.jsonl");
            FileAuditSinkOptions o;
            o.log_id = ca_log_id;
            o.lock = FileAuditSinkOptions::Lock::per_hold;
            o.lock_wait = options.lock_wait;
            auto sink = std::make_unique<FileAuditSink>(log_path, o);
            file_sink = sink.get();
            log_sink = std::move(sink);
        } else {
            log_sink = std::make_unique<MemoryAuditSink>();
        }
        log_certs.add_der(ca_der);
        AuditVerifyOptions vo;
        vo.expected_log_id = ca_log_id;
        vo.require_record_signatures = true;
        vo.require_closed = false;  // a crash may leave records signed but not checkpointed
        log_verifier = std::make_unique<AuditLogVerifier>(log_certs, vo);
    }

    // ---- turns -----------------------------------------------------------------------------

    /// One operation's (or a Hold's) turn: this CA's mutex and, for a state directory, the CA
    /// log's file lock, with the CA's view brought up to date with what other processes recorded
    /// since its last turn. A nested turn (an operation inside a Hold) shares the outer one's.
    class Turn {
    public:
        explicit Turn(Impl& impl) : m_impl(impl), m_lock(impl.mutex) {
            if (m_impl.turns == 0) m_impl.begin_turn();  // throws: nothing is held
            ++m_impl.turns;
        }
        ~Turn() {
            if (--m_impl.turns == 0) m_impl.file_hold.reset();
        }
        Turn(const Turn&) = delete;
        Turn& operator=(const Turn&) = delete;

    private:
        Impl& m_impl;
        std::unique_lock<std::recursive_mutex> m_lock;
    };

    void begin_turn() {
        // Waits for the lock (options.lock_wait), else throws naming its holder.
        if (file_sink != nullptr) file_hold.emplace(file_sink->hold());
        if (!log_failure.empty()) return;  // writes refuse until reopened; reads see memory
        try {
            if (!log) {
                // The first turn replays the whole log (and records a torn tail it cut).
                const std::string fp = certificate_fingerprint(ca_der);
                const AuditSigner signer{*kms, ca_key, fp};
                AuditWriterOptions o;
                o.log_id = ca_log_id;
                o.agent = ca_log_id;
                o.cert_fp = fp;
                o.checkpoint_every = 0;  // write_log() checkpoints after every operation
                log = std::make_unique<AuditLogWriter>(*log_sink, clock, signer, o, signer);
            } else {
                log->catch_up();  // seq and the Merkle tree continue from the file as it is
            }
            read_log(true);
        } catch (const std::exception& e) {
            // What others appended could not be followed (it does not verify): the writer's
            // view is unknown, so the log takes no more records until the CA is opened again.
            if (log) log_failure = e.what();
            file_hold.reset();
            throw;
        } catch (...) {
            file_hold.reset();
            throw;
        }
    }

    /// Verifies the log's lines after the first `lines_applied` and, with `apply`, applies their
    /// records to what the CA acts on. This CA's own lines, just written by an operation that
    /// applies its effects itself, are only verified.
    void read_log(bool apply) {
        log_sink->for_each_line_from(lines_applied, [&](std::string_view text) {
            ++lines_applied;
            if (!log_verifier->add_line(text))
                refuse_state("the CA log audit/ca.jsonl does not verify with the key of ca.pem: " +
                             log_verifier->finish().message);
            if (apply) apply_line(text);
        });
    }

    /// Appends the records, a signed checkpoint over them and makes both durable; returns the
    /// first record's seq. Nothing the operation changes is stored before this returns: a
    /// failure leaves the CA as it was. A failure after lines reached the sink leaves the log's
    /// state unknown, so the log refuses further writes until the CA is opened again (the file
    /// sink cuts what was not made durable when it reopens). Caller holds the mutex.
    std::uint64_t write_log(const std::vector<CaEvent>& events) {
        if (!log_failure.empty())
            throw Error(ErrorCategory::invalid_state,
                        "the CA log " + log_sink->name() +
                            " failed earlier and takes no more records until the CA is opened "
                            "again: " +
                            log_failure);
        if (!log) throw Error(ErrorCategory::invalid_state, "the CA log is not open");
        const std::uint64_t before = log->size();
        try {
            for (const CaEvent& e : events) log->append(e.event, e.payload);
            log->checkpoint();
        } catch (const std::exception& e) {
            if (log->size() != before) log_failure = e.what();
            throw;
        }
        read_log(false);
        return before;
    }

    /// The approval must cover exactly this agent and scope and be signed by the approver's key
    /// held in this CA's Kms. Caller holds the mutex.
    void check_approval(const ScopeApproval& a, std::string_view agent_id, const Scope& scope) {
        auto refuse = [&](const std::string& why) {
            throw Error(ErrorCategory::unauthorised,
                        "agent '" + std::string(agent_id) + "': " + why);
        };
        if (registrations.count(agent_id) == 0) refuse("not registered");
        if (a.agent_id != agent_id) refuse("the scope approval is for agent '" + a.agent_id + "'");
        if (a.scope_sha256 != scope_sha256_hex(scope))
            refuse("the approved scope hash " + a.scope_sha256 +
                   " does not match the scope to certify (" + scope_sha256_hex(scope) + ")");
        if (!verify_scope_approval(a, scope))
            refuse("the approval signature by '" + a.approver + "' does not verify");
        if (a.approved_at > clock.now_ns()) refuse("the approval is dated in the future");
        KeyHandle approver_key;
        try {
            approver_key = kms->find_key(approver_key_label(a.approver));
        } catch (const Error& e) {
            if (e.category() != ErrorCategory::not_found) throw;
            refuse("approver '" + a.approver + "' has no key in the CA's KMS");
        }
        if (kms->public_key(approver_key).spki_der != a.approver_public_key)
            refuse("the approval was not signed with approver '" + a.approver + "''s key");
    }

    // ---- state from the log ----------------------------------------------------------------

    [[noreturn]] void refuse_state(const std::string& why) const {
        throw Error(ErrorCategory::invalid_state, options.state_dir + ": " + why);
    }

    /// Rebuilds what the CA signs from its own log (registrations, current scope approvals,
    /// issued certificates, revocations, the latest CRL), after verifying every line of it with
    /// the CA key. The files beside it are copies that check_files() compares with this: a file
    /// restored from an older state cannot undo a revocation or widen a scope. Caller is in its
    /// first turn.
    void load_from_log() {
        if (lines_applied == 0)
            refuse_state(
                "the CA log audit/ca.jsonl is missing or empty, so the state files cannot "
                "be checked against it");
        if (!initialised) refuse_state("the CA log audit/ca.jsonl holds no ca.initialised record");
    }

    /// Applies one verified line of the log (a record; checkpoints change nothing).
    void apply_line(std::string_view text) {
        const std::string name = "audit/ca.jsonl";
        const json line = json::parse(text);
        if (line.at("kind").get<std::string>() != "record") return;
        const std::string event = line.at("event").get<std::string>();
        const json& p = line.at("payload");
        const std::string where = name + " seq " +
                                  std::to_string(line.at("seq").get<std::uint64_t>()) + " (" +
                                  event + ")";
        try {
            if (event == audit_event::ca_initialised) {
                if (crypto::base64_decode(p.at("certificate").get<std::string>(), "certificate") !=
                    ca_der)
                    refuse_state(where + ": the CA certificate is not ca.pem");
                if (p.at("key_label").get<std::string>() != options.key_label ||
                    p.at("oid_arc").get<std::string>() != options.oid_arc)
                    refuse_state(where + ": ca.json's key label or OID arc is not the logged one");
                initialised = true;
            } else if (!initialised) {
                refuse_state(where + ": the log does not begin with ca.initialised");
            } else if (event == audit_event::agent_registered) {
                auto r = agent_registration_from_json(p.at("registration").dump());
                registrations[r.agent_id] = std::move(r);
            } else if (event == audit_event::scope_approved) {
                ApprovedScope as{scope_approval_from_json(p.at("approval").dump()),
                                 parse_scope_json(p.at("scope").dump())};
                if (as.approval.scope_sha256 != scope_sha256_hex(as.scope))
                    refuse_state(where + ": the scope does not match its approval's hash");
                approvals[as.approval.agent_id] = std::move(as);
            } else if (event == audit_event::certificate_issued) {
                issued.push_back(AgentCertificate::from_der(
                    crypto::base64_decode(p.at("certificate").get<std::string>(), "certificate"),
                    options.oid_arc));
            } else if (event == audit_event::certificate_revoked) {
                Revocation r{p.at("serial").get<std::string>(), p.at("agent").get<std::string>(),
                             p.at("reason").get<std::string>(),
                             p.at("revoked_at_ns").get<TimeNs>()};
                auto earlier =
                    std::find_if(revoked.begin(), revoked.end(),
                                 [&](const Revocation& x) { return x.serial == r.serial; });
                if (p.value("reason_update", false) && earlier != revoked.end())
                    earlier->reason = r.reason;  // a later keyCompromise of a revoked serial
                else
                    revoked.push_back(std::move(r));
            } else if (event == audit_event::crl_issued) {
                crl = CertificateRevocationList::from_der(
                    crypto::base64_decode(p.at("crl").get<std::string>(), "crl"));
            }
        } catch (const json::exception& e) {
            refuse_state(where + ": " + e.what());
        } catch (const Error& e) {
            if (e.category() == ErrorCategory::invalid_state) throw;
            refuse_state(where + ": " + e.what());
        }
    }

    /// The state files must say what the log says. A file missing for something the log holds
    /// is written from the log (the CA stops between its log and its files only in a crash); a
    /// file that differs, or that names something the log does not, is refused: it was restored
    /// from an older state or altered, and the CA must not act on it or overwrite the evidence.
    void check_files() {
        const std::string hint =
            ": it was restored from an older state or altered (remove it to have the CA write "
            "it again from its log)";
        auto mismatch = [&](const std::string& rel, const std::string& what) {
            refuse_state(rel + " " + what + hint);
        };
        for (const auto& name : list_dir(path("registrations"), ".json")) {
            const std::string rel = "registrations/" + name;
            const auto r = agent_registration_from_json(read_text(path(rel)));
            auto it = registrations.find(r.agent_id);
            if (it == registrations.end() || rel != "registrations/" + r.agent_id + ".json")
                mismatch(rel, "registers agent '" + r.agent_id + "', which the CA log does not");
            if (to_json(r) != to_json(it->second))
                mismatch(rel, "is not the registration in the CA log");
        }
        for (const auto& [agent, r] : registrations) {
            const std::string rel = "registrations/" + agent + ".json";
            if (!exists(path(rel))) write_atomic(path(rel), to_json(r) + "\n");
        }
        for (const auto& name : list_dir(path("approvals"), ".json")) {
            const std::string rel = "approvals/" + name;
            const json j = json::parse(read_text(path(rel)));
            const ScopeApproval a = scope_approval_from_json(j.at("approval").dump());
            const Scope scope = parse_scope_json(j.at("scope").get<std::string>());
            auto it = approvals.find(a.agent_id);
            if (it == approvals.end() || rel != "approvals/" + a.agent_id + ".json")
                mismatch(rel, "holds a scope approval for agent '" + a.agent_id +
                                  "', which the CA log does not");
            if (scope_sha256_hex(scope) != a.scope_sha256)
                mismatch(rel, "holds a scope that does not match its approval's hash");
            const ScopeApproval& logged = it->second.approval;
            if (to_json(a) != to_json(logged) || scope_sha256_hex(scope) != logged.scope_sha256)
                mismatch(rel,
                         "holds the scope sha256:" + scope_sha256_hex(scope) + " approved by '" +
                             a.approver + "' at " + std::to_string(a.approved_at) +
                             " ns, but the CA log's current approval for agent '" + a.agent_id +
                             "' is sha256:" + logged.scope_sha256 + " by '" + logged.approver +
                             "' at " + std::to_string(logged.approved_at) + " ns");
        }
        for (const auto& [agent, as] : approvals) {
            const std::string rel = "approvals/" + agent + ".json";
            if (!exists(path(rel))) save_approval(as.approval, as.scope);
        }
        for (const auto& name : list_dir(path("certs"), ".pem")) {
            const std::string rel = "certs/" + name;
            const auto c = AgentCertificate::load_file(path(rel), options.oid_arc);
            const AgentCertificate* logged = find_issued(c.serial());
            if (logged == nullptr || rel != "certs/" + c.serial() + ".pem")
                mismatch(rel, "holds serial " + c.serial() + ", which the CA log never issued");
            if (logged->der() != c.der())
                mismatch(rel, "is not the certificate the CA log issued as serial " + c.serial());
        }
        for (const auto& c : issued) {
            const std::string rel = "certs/" + c.serial() + ".pem";
            if (!exists(path(rel))) write_atomic(path(rel), c.pem());
        }
        if (exists(path("revocations.json"))) {
            const json arr = json::parse(read_text(path("revocations.json")));
            if (arr != revocations_json(revoked)) {
                std::string serials;
                for (const auto& r : revoked) serials += (serials.empty() ? "" : ", ") + r.serial;
                mismatch("revocations.json", "is not the CA log's list of revocations (" +
                                                 (serials.empty() ? "none" : serials) + ")");
            }
        } else {
            save_revocations(revoked);
        }
        if (exists(path("crl.pem"))) {
            const auto file = CertificateRevocationList::load_file(path("crl.pem"));
            if (!crl || file.der() != crl->der()) {
                std::string serials;
                if (crl)
                    for (const auto& s : crl->revoked_serials())
                        serials += (serials.empty() ? "" : ", ") + s;
                mismatch("crl.pem", "is not the latest CRL in the CA log (revoked: " +
                                        (serials.empty() ? "none" : serials) + ")");
            }
        } else if (crl) {
            write_atomic(path("crl.pem"), crl->pem());
        }
    }

    void save_approval(const ScopeApproval& approval, const Scope& scope) const {
        json j = {{"approval", as_json(approval, "scope approval")}, {"scope", to_json(scope)}};
        write_atomic(path("approvals/" + approval.agent_id + ".json"), j.dump(2) + "\n");
    }

    bool is_revoked(std::string_view serial) const {
        for (const auto& r : revoked)
            if (r.serial == serial) return true;
        return false;
    }

    /// The revocation for keyCompromise of a certificate with this public key, if any.
    const Revocation* key_compromise(const std::vector<std::uint8_t>& public_key) const {
        for (const auto& r : revoked) {
            if (reason_code(r.reason) != Botan::KEY_COMPROMISE) continue;
            const AgentCertificate* c = find_issued(r.serial);
            if (c != nullptr && c->public_key() == public_key) return &r;
        }
        return nullptr;
    }

    const AgentCertificate* find_issued(const std::string& serial) const {
        for (const auto& c : issued)
            if (c.serial() == serial) return &c;
        return nullptr;
    }
};

LocalCa::LocalCa(std::unique_ptr<Impl> impl) : m_impl(std::move(impl)) {}

LocalCa::~LocalCa() {
    // Every operation already ends with a checkpoint; close() adds one only if a record is
    // somehow uncovered, and makes the file durable once more.
    // Between turns nothing is uncovered, so this writes nothing and needs no lock.
    if (m_impl && m_impl->log && m_impl->log_failure.empty()) {
        try {
            m_impl->log->close();
        } catch (...) {
            // Nothing to report to: every record was made durable when its operation returned.
        }
    }
}

std::unique_ptr<LocalCa> LocalCa::init(std::shared_ptr<Kms> kms, const Clock& clock,
                                       LocalCaOptions options, const CaInitOptions& init) {
    if (!kms) throw Error(ErrorCategory::invalid_input, "LocalCa: no Kms");
    (void)scope_extension_oid(options.oid_arc);
    auto impl = std::make_unique<Impl>(std::move(kms), clock, std::move(options));
    if (impl->persistent()) {
        make_dir(impl->options.state_dir);
        if (exists(impl->path("ca.pem")))
            throw Error(ErrorCategory::invalid_state,
                        impl->options.state_dir + " already holds a CA (ca.pem)");
        struct stat st;
        if (::stat(impl->path("audit/ca.jsonl").c_str(), &st) == 0 && st.st_size > 0)
            throw Error(ErrorCategory::invalid_state,
                        impl->options.state_dir + " already holds a CA log (audit/ca.jsonl)");
    }
    impl->ca_key = impl->kms->find_or_create_key(impl->options.key_label, init.algorithm);
    if (impl->ca_key.algorithm != init.algorithm)
        throw Error(ErrorCategory::invalid_state,
                    "the Kms already holds key '" + impl->options.key_label + "' as " +
                        to_string(impl->ca_key.algorithm) + ", not " + to_string(init.algorithm));

    kms_botan::KmsPrivateKey key(*impl->kms, impl->ca_key);
    Botan::System_RNG rng;
    Botan::AlgorithmIdentifier sig_algo;
    auto signer = kms_botan::x509_signer(key, rng, sig_algo);
    Botan::X509_DN dn;
    dn.add_attribute("X520.CommonName", init.name);
    dn.add_attribute("X520.Organization", "Kakunin");
    const TimeNs now = clock.now_ns();
    const auto cert = x509::make_ca_certificate(
        *signer, sig_algo, key.public_info().spki_der, dn, now,
        now + std::chrono::duration_cast<std::chrono::nanoseconds>(init.validity).count(), rng);
    impl->ca_der = cert.BER_encode();
    impl->ca_cert = std::make_shared<const Botan::X509_Certificate>(cert);
    const TrustAnchor anchor = TrustAnchor::from_der(impl->ca_der);
    const json created = {{"subject", anchor.subject()},
                          {"serial", crypto::to_hex(cert.serial_number())},
                          {"not_before_ns", x509::to_time_ns(cert.not_before())},
                          {"not_after_ns", x509::to_time_ns(cert.not_after())},
                          {"algorithm", to_string(impl->ca_key.algorithm)},
                          {"key_label", impl->options.key_label},
                          {"oid_arc", impl->options.oid_arc},
                          {"fingerprint", anchor.fingerprint()},
                          {"certificate", b64(impl->ca_der)}};
    const std::string created_payload = dump_payload(created, audit_event::ca_initialised);
    if (impl->persistent()) {
        for (const char* sub : {"certs", "registrations", "approvals"}) make_dir(impl->path(sub));
        impl->save_config();
        write_atomic(impl->path("ca.pem"), cert.PEM_encode());
        impl->save_revocations({});
    }
    impl->open_log();
    {
        Impl::Turn turn(*impl);
        if (impl->log->size() != 0)  // another process initialised it meanwhile
            throw Error(ErrorCategory::invalid_state,
                        impl->options.state_dir + " already holds a CA log (audit/ca.jsonl)");
        const CertificateRevocationList first = impl->make_crl({});
        impl->write_log(
            {{audit_event::ca_initialised, created_payload},
             {audit_event::crl_issued, dump_payload(crl_json(first), audit_event::crl_issued)}});
        impl->install_crl(first);
        impl->initialised = true;
    }
    return std::unique_ptr<LocalCa>(new LocalCa(std::move(impl)));
}

std::unique_ptr<LocalCa> LocalCa::open(std::shared_ptr<Kms> kms, const Clock& clock,
                                       LocalCaOptions options) {
    if (!kms) throw Error(ErrorCategory::invalid_input, "LocalCa: no Kms");
    if (options.state_dir.empty())
        throw Error(ErrorCategory::invalid_input, "LocalCa::open needs a state directory");
    auto impl = std::make_unique<Impl>(std::move(kms), clock, std::move(options));
    if (!exists(impl->path("ca.pem")))
        throw Error(ErrorCategory::not_found,
                    impl->options.state_dir + " holds no CA (run 'kakunin ca init')");
    try {
        const json config = json::parse(read_text(impl->path("ca.json")));
        impl->options.key_label = config.at("key_label").get<std::string>();
        impl->options.oid_arc = config.at("oid_arc").get<std::string>();
    } catch (const json::exception& e) {
        throw Error(ErrorCategory::invalid_input, impl->path("ca.json") + ": " + e.what());
    }
    const TrustAnchor anchor = TrustAnchor::load_file(impl->path("ca.pem"));
    impl->ca_cert = anchor.impl().cert;
    impl->ca_der = anchor.der();
    impl->ca_key = impl->kms->find_key(impl->options.key_label);
    if (impl->kms->public_key(impl->ca_key).spki_der != impl->ca_cert->subject_public_key_info())
        throw Error(ErrorCategory::invalid_state,
                    "the Kms key '" + impl->options.key_label + "' is not the key of ca.pem");
    // The log is what the CA's state is read from, in a turn: under the log's file lock, which
    // keeps every other writer of the state directory out meanwhile.
    impl->open_log();
    {
        Impl::Turn turn(*impl);
        impl->load_from_log();
        try {
            impl->check_files();
        } catch (const json::exception& e) {
            throw Error(ErrorCategory::invalid_input,
                        impl->options.state_dir + ": malformed state file: " + e.what());
        }
    }
    return std::unique_ptr<LocalCa>(new LocalCa(std::move(impl)));
}

const LocalCaOptions& LocalCa::options() const noexcept { return m_impl->options; }

struct LocalCa::Hold::Turn {
    explicit Turn(LocalCa::Impl& impl) : turn(impl) {}
    LocalCa::Impl::Turn turn;
};

LocalCa::Hold::Hold(std::unique_ptr<Turn> turn) : m_turn(std::move(turn)) {}
LocalCa::Hold::Hold(Hold&& other) noexcept = default;
LocalCa::Hold::~Hold() = default;

LocalCa::Hold LocalCa::hold() { return Hold(std::make_unique<Hold::Turn>(*m_impl)); }

TrustAnchor LocalCa::trust_anchor() const { return TrustAnchor::from_der(m_impl->ca_der); }

void LocalCa::register_agent(const AgentRegistration& r) {
    validate_agent_id(r.agent_id);
    // Log ids are the agent id, AGENT.suffix for its other logs (AGENT.replay), and "ca" for
    // the CA's own log (docs/audit-format.md, who signs which log): an agent named "ca" or
    // with a dot could claim a log that is not its own.
    std::string lower(r.agent_id);
    for (char& c : lower) c = static_cast<char>(c >= 'A' && c <= 'Z' ? c - 'A' + 'a' : c);
    if (lower == "ca" || r.agent_id.find('.') != std::string::npos)
        throw Error(ErrorCategory::invalid_input,
                    "agent id '" + r.agent_id +
                        "': 'ca' names the CA's own log and a '.' separates an agent's other "
                        "logs (AGENT.replay); choose another id");
    if (r.owner.empty() || r.purpose.empty() || r.created_by.empty())
        throw Error(ErrorCategory::invalid_input,
                    "agent registration: owner, purpose and created_by are required");
    const json payload = {{"agent", r.agent_id},
                          {"registration", as_json(r, "agent registration")}};
    const std::string text = dump_payload(payload, audit_event::agent_registered);
    Impl::Turn turn(*m_impl);
    if (m_impl->registrations.count(r.agent_id) != 0)
        throw Error(ErrorCategory::invalid_state,
                    "agent '" + r.agent_id + "' is already registered");
    m_impl->write_log({{audit_event::agent_registered, text}});
    if (m_impl->persistent())
        write_atomic(m_impl->path("registrations/" + r.agent_id + ".json"), to_json(r) + "\n");
    m_impl->registrations.emplace(r.agent_id, r);
}

std::optional<AgentRegistration> LocalCa::registration(std::string_view agent_id) const {
    Impl::Turn turn(*m_impl);
    auto it = m_impl->registrations.find(agent_id);
    if (it == m_impl->registrations.end()) return std::nullopt;
    return it->second;
}

void LocalCa::record_approval(const ScopeApproval& approval, const Scope& scope) {
    validate_agent_id(approval.agent_id);
    validate(scope);
    Impl::Turn turn(*m_impl);
    m_impl->check_approval(approval, approval.agent_id, scope);
    const json approval_json = as_json(approval, "scope approval");
    const json payload = {{"agent", approval.agent_id},
                          {"approval", approval_json},
                          {"scope_sha256", approval.scope_sha256},
                          {"scope", json::parse(to_json(scope))}};
    m_impl->write_log(
        {{audit_event::scope_approved, dump_payload(payload, audit_event::scope_approved)}});
    if (m_impl->persistent()) m_impl->save_approval(approval, scope);
    m_impl->approvals[approval.agent_id] = ApprovedScope{approval, scope};
}

std::optional<LocalCa::ApprovedScope> LocalCa::approved_scope(std::string_view agent_id) const {
    Impl::Turn turn(*m_impl);
    auto it = m_impl->approvals.find(agent_id);
    if (it == m_impl->approvals.end()) return std::nullopt;
    return it->second;
}

AgentCertificate LocalCa::issue(const IssueRequest& request) {
    validate_agent_id(request.agent_id);
    const std::vector<std::uint8_t> scope_der = encode_scope_extension(request.scope);
    if (!crypto::spki_algorithm(request.public_key))
        throw Error(ErrorCategory::invalid_input,
                    "agent '" + request.agent_id +
                        "': the public key is not an Ed25519 or ECDSA P-256 SubjectPublicKeyInfo");
    Impl::Turn turn(*m_impl);
    m_impl->check_approval(request.approval, request.agent_id, request.scope);
    if (const Revocation* r = m_impl->key_compromise(request.public_key))
        throw Error(
            ErrorCategory::unauthorised,
            "agent '" + request.agent_id + "': the public key was revoked for " +
                "keyCompromise (serial " + r->serial + ", agent '" + r->agent_id + "', reason \"" +
                r->reason +
                "\"): a compromised key is never certified again; the agent needs a new key");

    const TimeNs now = m_impl->clock.now_ns();
    const TimeNs not_before = request.not_before.value_or(now);
    const auto validity =
        request.validity.count() > 0 ? request.validity : m_impl->options.default_validity;
    const TimeNs not_after =
        not_before + std::chrono::duration_cast<std::chrono::nanoseconds>(validity).count();
    if (not_after > x509::to_time_ns(m_impl->ca_cert->not_after()))
        throw Error(
            ErrorCategory::invalid_state,
            "agent '" + request.agent_id + "': the certificate would outlive the CA certificate");

    x509::LeafTemplate leaf;
    leaf.subject_public_key = request.public_key;
    leaf.agent_id = request.agent_id;
    leaf.simulation = request.simulation;
    leaf.not_before = not_before;
    leaf.not_after = not_after;
    leaf.scope_oid = scope_extension_oid(m_impl->options.oid_arc);
    leaf.scope_der = scope_der;
    leaf.scope_critical = true;

    kms_botan::KmsPrivateKey key(*m_impl->kms, m_impl->ca_key);
    Botan::System_RNG rng;
    Botan::AlgorithmIdentifier sig_algo;
    auto signer = kms_botan::x509_signer(key, rng, sig_algo);
    const auto cert = x509::make_agent_certificate(*signer, sig_algo, *m_impl->ca_cert, leaf, rng);
    AgentCertificate out = AgentCertificate::from_der(cert.BER_encode(), m_impl->options.oid_arc);
    // Recorded before it is stored or handed out: no certificate exists outside the log.
    m_impl->write_log({{audit_event::certificate_issued,
                        dump_payload(certificate_json(out, request.approval.approver,
                                                      request.approval.approved_at),
                                     audit_event::certificate_issued)}});
    if (m_impl->persistent())
        write_atomic(m_impl->path("certs/" + out.serial() + ".pem"), out.pem());
    m_impl->issued.push_back(out);
    return out;
}

AgentCertificate LocalCa::issue_for_agent(std::string_view agent_id,
                                          const std::vector<std::uint8_t>& public_key,
                                          std::chrono::seconds validity) {
    Impl::Turn turn(*m_impl);  // the approval read and the issue in one turn
    const auto approved = approved_scope(agent_id);
    if (!approved)
        throw Error(ErrorCategory::unauthorised,
                    "agent '" + std::string(agent_id) + "' has no approved scope");
    IssueRequest req;
    req.agent_id = std::string(agent_id);
    req.scope = approved->scope;
    req.approval = approved->approval;
    req.public_key = public_key;
    req.validity = validity;
    return issue(req);
}

void LocalCa::revoke(std::string_view serial_hex, std::string_view reason) {
    const std::string serial = normalise_serial(serial_hex);
    Impl::Turn turn(*m_impl);
    const AgentCertificate* cert = m_impl->find_issued(serial);
    if (cert == nullptr)
        throw Error(ErrorCategory::not_found,
                    "no certificate with serial " + serial + " was issued by this CA");
    const Botan::CRL_Code code = reason_code(reason);
    // A compromised key is compromised in every certificate that carries it: all of them go on
    // the CRL, each recorded, so that no earlier (or renewed) certificate of the key still works.
    std::vector<const AgentCertificate*> targets;
    // Revoked before for another reason, now known compromised: the log and the revocation
    // list say so (the key is never certified again); its CRL entry stays as it was.
    bool reason_update = false;
    if (!m_impl->is_revoked(serial))
        targets.push_back(cert);
    else if (code == Botan::KEY_COMPROMISE && !m_impl->key_compromise(cert->public_key()))
        reason_update = true;
    if (code == Botan::KEY_COMPROMISE) {
        const std::vector<std::uint8_t> key = cert->public_key();
        for (const auto& c : m_impl->issued)
            if (c.serial() != serial && !m_impl->is_revoked(c.serial()) && c.public_key() == key)
                targets.push_back(&c);
    }
    if (targets.empty() && !reason_update) return;  // revoking twice is a no-op
    const TimeNs now = m_impl->clock.now_ns();
    std::vector<CaEvent> events;
    std::vector<Botan::CRL_Entry> entries;
    std::vector<Revocation> list = m_impl->revoked;
    if (reason_update) {
        for (Revocation& r : list) {
            if (r.serial != serial) continue;
            json updated = {{"agent", r.agent_id},           {"serial", r.serial},
                            {"reason", std::string(reason)}, {"reason_code", crl_reason_name(code)},
                            {"revoked_at_ns", r.revoked_at}, {"fingerprint", cert->fingerprint()},
                            {"reason_update", true},         {"previous_reason", r.reason}};
            events.push_back({audit_event::certificate_revoked,
                              dump_payload(updated, audit_event::certificate_revoked)});
            r.reason = std::string(reason);
            break;
        }
    }
    for (const AgentCertificate* t : targets) {
        const Revocation r{t->serial(), t->agent_id(), std::string(reason), now};
        json revoked = {{"agent", r.agent_id},
                        {"serial", r.serial},
                        {"reason", r.reason},
                        {"reason_code", crl_reason_name(code)},
                        {"revoked_at_ns", r.revoked_at},
                        {"fingerprint", t->fingerprint()}};
        if (t != cert) revoked["same_key_as_serial"] = serial;
        events.push_back({audit_event::certificate_revoked,
                          dump_payload(revoked, audit_event::certificate_revoked)});
        entries.push_back(crl_entry(r.serial, now, code));
        list.push_back(r);
    }
    const CertificateRevocationList next = m_impl->make_crl(entries);
    events.push_back(
        {audit_event::crl_issued, dump_payload(crl_json(next), audit_event::crl_issued)});
    m_impl->write_log(events);
    m_impl->install_crl(next);
    m_impl->save_revocations(list);
    m_impl->revoked = std::move(list);
}

CertificateRevocationList LocalCa::current_crl() {
    Impl::Turn turn(*m_impl);
    const TimeNs now = m_impl->clock.now_ns();
    const auto half =
        std::chrono::duration_cast<std::chrono::nanoseconds>(m_impl->options.crl_validity).count() /
        2;
    if (!m_impl->crl || now < m_impl->crl->this_update() ||
        now >= m_impl->crl->this_update() + half)
        return m_impl->reissue_crl();
    return *m_impl->crl;
}

CertificateRevocationList LocalCa::issue_crl() {
    Impl::Turn turn(*m_impl);
    return m_impl->reissue_crl();
}

std::uint64_t LocalCa::record_event(std::string_view event, std::string_view payload_json) {
    if (!is_valid_audit_event(event))
        throw Error(ErrorCategory::invalid_input,
                    "CA log: unknown event \"" + std::string(event) + "\"");
    if (reserved_for_ca(event))
        throw Error(ErrorCategory::invalid_input,
                    "CA log: \"" + std::string(event) +
                        "\" is recorded by the CA's own operations (or belongs in an agent's "
                        "log), not through record_event");
    // Canonical form first, so that a bad payload is refused before anything is written.
    const std::string payload = canonical_json(payload_json);
    if (payload.empty() || payload.front() != '{')
        throw Error(ErrorCategory::invalid_input, "CA log: the payload is not a JSON object");
    Impl::Turn turn(*m_impl);
    return m_impl->write_log({{event, payload}});
}

std::string LocalCa::audit_log_path() const { return m_impl->log_path; }

std::vector<std::string> LocalCa::audit_log_lines() const {
    Impl::Turn turn(*m_impl);
    std::vector<std::string> out;
    m_impl->log_sink->for_each_line([&](std::string_view line) { out.emplace_back(line); });
    return out;
}

std::vector<Revocation> LocalCa::revocations() const {
    Impl::Turn turn(*m_impl);
    return m_impl->revoked;
}

bool LocalCa::is_revoked(std::string_view serial_hex) const {
    const std::string serial = normalise_serial(serial_hex);
    Impl::Turn turn(*m_impl);
    return m_impl->is_revoked(serial);
}

std::vector<AgentCertificate> LocalCa::issued_certificates(std::string_view agent_id) const {
    Impl::Turn turn(*m_impl);
    std::vector<AgentCertificate> out;
    for (const auto& c : m_impl->issued)
        if (agent_id.empty() || c.agent_id() == agent_id) out.push_back(c);
    return out;
}

std::optional<AgentCertificate> LocalCa::find_certificate(std::string_view serial_hex) const {
    const std::string serial = normalise_serial(serial_hex);
    Impl::Turn turn(*m_impl);
    const AgentCertificate* c = m_impl->find_issued(serial);
    if (c == nullptr) return std::nullopt;
    return *c;
}

}  // namespace kakunin
