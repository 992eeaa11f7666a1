// Human steps as records (human_steps.hpp), and FileHumanStepFeed: the CA log of a state
// directory, followed read-only on the feed's own thread.
#include <sys/stat.h>

#include <algorithm>
#include <atomic>
#include <cerrno>
#include <condition_variable>
#include <cstdio>
#include <cstring>
#include <thread>

#include "audit/json.hpp"
#include "kakunin/audit_record.hpp"
#include "kakunin/audit_verify.hpp"
#include "kakunin/error.hpp"
#include "kakunin/human_steps.hpp"

namespace kakunin {
namespace {

using audit_detail::json;

std::string dump(const json& j) { return j.dump(-1, ' ', false, json::error_handler_t::replace); }

std::string text_member(const json& p, const char* key, const char* what, bool required = true) {
    const auto it = p.find(key);
    if (it == p.end()) {
        if (!required) return {};
        throw Error(ErrorCategory::invalid_input, std::string(what) + "." + key + ": missing");
    }
    if (!it->is_string())
        throw Error(ErrorCategory::invalid_input, std::string(what) + "." + key + ": not a string");
    return it->get<std::string>();
}

TimeNs time_member(const json& p, const char* key, const char* what) {
    const auto it = p.find(key);
    if (it == p.end() || !it->is_number_integer())
        throw Error(ErrorCategory::invalid_input,
                    std::string(what) + "." + key + ": missing or not an integer");
    return it->get<TimeNs>();
}

}  // namespace

const char* to_string(HumanStep::Kind k) noexcept {
    switch (k) {
        case HumanStep::Kind::acknowledge: return "acknowledge";
        case HumanStep::Kind::resolve: return "resolve";
        case HumanStep::Kind::review: return "review";
        case HumanStep::Kind::reenable: return "reenable";
        case HumanStep::Kind::lift_reduce_only: return "lift_reduce_only";
    }
    return "unknown";
}

std::string_view human_step_event(HumanStep::Kind k) noexcept {
    switch (k) {
        case HumanStep::Kind::acknowledge: return "incident.acknowledged";
        case HumanStep::Kind::resolve: return "incident.resolved";
        case HumanStep::Kind::review: return audit_event::review_signed;
        case HumanStep::Kind::reenable: return audit_event::guard_resumed;
        case HumanStep::Kind::lift_reduce_only: return audit_event::guard_reduce_only_lifted;
    }
    return {};
}

std::string human_step_payload(const HumanStep& s) {
    switch (s.kind) {
        case HumanStep::Kind::review:
            if (!s.review)
                throw Error(ErrorCategory::invalid_input, "review step: no signed statement");
            return to_json(*s.review);
        case HumanStep::Kind::reenable:
            if (!s.reenable)
                throw Error(ErrorCategory::invalid_input, "re-enable step: no signed statement");
            return to_json(*s.reenable);
        case HumanStep::Kind::lift_reduce_only:
            return dump(
                {{"agent", s.agent_id}, {"by", s.by}, {"reason", s.note}, {"at_ns", s.at_ns}});
        case HumanStep::Kind::acknowledge:
        case HumanStep::Kind::resolve: break;
    }
    return dump({{"agent", s.agent_id},
                 {"incident", s.target},
                 {"by", s.by},
                 {"note", s.note},
                 {"at_ns", s.at_ns}});
}

std::optional<HumanStep> human_step_from_record(std::string_view event,
                                                std::string_view payload_json) {
    HumanStep s;
    if (event == "incident.acknowledged")
        s.kind = HumanStep::Kind::acknowledge;
    else if (event == "incident.resolved")
        s.kind = HumanStep::Kind::resolve;
    else if (event == audit_event::review_signed)
        s.kind = HumanStep::Kind::review;
    else if (event == audit_event::guard_resumed)
        s.kind = HumanStep::Kind::reenable;
    else if (event == audit_event::guard_reduce_only_lifted)
        s.kind = HumanStep::Kind::lift_reduce_only;
    else
        return std::nullopt;
    const std::string what = std::string(event) + " payload";
    switch (s.kind) {
        case HumanStep::Kind::review:
            s.review = incident_review_from_json(payload_json);
            s.agent_id = s.review->agent_id;
            s.target = s.review->incident_id;
            s.by = s.review->reviewer;
            s.note = s.review->root_cause;
            s.at_ns = s.review->signed_at_ns;
            return s;
        case HumanStep::Kind::reenable:
            s.reenable = reenable_from_json(payload_json);
            s.agent_id = s.reenable->agent_id;
            s.target = s.reenable->halt_id;
            s.by = s.reenable->by;
            s.note = s.reenable->reason;
            s.at_ns = s.reenable->signed_at_ns;
            return s;
        default: break;
    }
    const json p = audit_detail::parse_strict(payload_json, what);
    if (!p.is_object()) throw Error(ErrorCategory::invalid_input, what + ": not a JSON object");
    s.agent_id = text_member(p, "agent", what.c_str());
    s.by = text_member(p, "by", what.c_str());
    s.at_ns = time_member(p, "at_ns", what.c_str());
    if (s.kind == HumanStep::Kind::lift_reduce_only) {
        s.note = text_member(p, "reason", what.c_str(), false);
    } else {
        s.target = text_member(p, "incident", what.c_str());
        s.note = text_member(p, "note", what.c_str(), false);
    }
    return s;
}

// ---- FileHumanStepFeed ----

struct FileHumanStepFeed::Impl {
    std::string state_dir, log_path;
    FileHumanStepFeedOptions options;
    AuditCertificates ca;

    /// Guards everything below; held while delivering, so unsubscribe() waits for a delivery
    /// in progress and no step is delivered twice or out of order.
    mutable std::mutex mutex;
    std::vector<HumanStepListener*> listeners;
    std::vector<HumanStep> steps;  ///< every step read so far (the history for subscribers)
    std::uint64_t offset = 0;      ///< bytes of complete lines read
    std::uint64_t next_seq = 0;    ///< records below this seq were read
    std::string last_problem;      ///< said once until it changes

    std::mutex wake_mutex;
    std::condition_variable wake;
    bool stop = false;
    std::thread thread;

    void report(const std::string& message) {
        if (message == last_problem) return;
        last_problem = message;
        if (options.error_handler) options.error_handler(message);
    }

    /// One complete line (mutex held): a step record whose CA signature verifies is added.
    /// Returns the step to deliver, if any.
    std::optional<HumanStep> take_line(std::string_view line) {
        audit_detail::ParsedLine parsed;
        std::string error;
        if (!audit_detail::parse_line(line, parsed, error)) {
            report(log_path + ": a line at byte " + std::to_string(offset) +
                   " is skipped: " + error);
            return std::nullopt;
        }
        if (parsed.kind != audit_detail::LineKind::record) return std::nullopt;
        const AuditRecord& r = parsed.record;
        if (r.seq < next_seq) return std::nullopt;  // read before (a file rewritten in place)
        next_seq = r.seq + 1;
        const std::string where = log_path + " seq " + std::to_string(r.seq);
        try {
            if (r.event != "incident.acknowledged" && r.event != "incident.resolved" &&
                r.event != audit_event::review_signed && r.event != audit_event::guard_resumed &&
                r.event != audit_event::guard_reduce_only_lifted)
                return std::nullopt;
            // Only what the CA signed: a line written by anyone else moves no Guard.
            const std::string problem = ca.signer_problem(parsed.cert_fp, r.log_id, parsed.agent);
            if (!problem.empty()) throw Error(ErrorCategory::unauthorised, "signed by " + problem);
            if (r.sig.empty()) throw Error(ErrorCategory::unauthorised, "the record is not signed");
            const std::vector<std::uint8_t> sig = base64_decode(r.sig);
            if (!ca.verify(parsed.cert_fp,
                           reinterpret_cast<const std::uint8_t*>(parsed.canonical.data()),
                           parsed.canonical.size(), sig.data(), sig.size()))
                throw Error(ErrorCategory::unauthorised, "the CA signature does not verify");
            const json record = audit_detail::parse_strict(parsed.canonical, where);
            std::optional<HumanStep> step =
                human_step_from_record(r.event, dump(record.at("payload")));
            if (!step) return std::nullopt;
            step->source = "CA log seq " + std::to_string(r.seq);
            step->seq = r.seq;
            steps.push_back(*step);
            return step;
        } catch (const std::exception& e) {
            report(where + ": skipped: " + e.what());
            return std::nullopt;
        }
    }

    /// Reads the complete lines added since the last read (mutex held) and delivers their steps
    /// to the listeners.
    void read_new() {
        std::FILE* f = std::fopen(log_path.c_str(), "rb");
        if (f == nullptr) {
            if (errno != ENOENT) report(log_path + ": cannot be read: " + std::strerror(errno));
            return;
        }
        struct stat st {};
        if (::fstat(::fileno(f), &st) == 0 && static_cast<std::uint64_t>(st.st_size) < offset)
            offset = 0;  // replaced or cut: read again, records already read are skipped by seq
        std::string chunk;
        if (std::fseek(f, static_cast<long>(offset), SEEK_SET) == 0) {
            char buf[65536];
            std::size_t n;
            while ((n = std::fread(buf, 1, sizeof buf, f)) > 0) chunk.append(buf, n);
        }
        const bool failed = std::ferror(f) != 0;
        std::fclose(f);
        if (failed) {
            report(log_path + ": read failed");
            return;
        }
        std::size_t start = 0;
        for (;;) {
            const std::size_t nl = chunk.find('\n', start);
            if (nl == std::string::npos) break;  // a torn last line waits until it is complete
            const std::optional<HumanStep> step =
                take_line(std::string_view(chunk).substr(start, nl - start));
            offset += nl + 1 - start;
            start = nl + 1;
            if (step)
                for (HumanStepListener* l : listeners) l->on_human_step(*step);
        }
    }

    void loop() {
        std::unique_lock<std::mutex> lock(wake_mutex);
        while (!stop) {
            lock.unlock();
            {
                std::lock_guard<std::mutex> guard(mutex);
                try {
                    read_new();
                } catch (const std::exception& e) {
                    report(log_path + ": " + e.what());
                }
            }
            lock.lock();
            wake.wait_for(lock, options.poll_interval, [this] { return stop; });
        }
    }
};

FileHumanStepFeed::FileHumanStepFeed(std::string state_dir, FileHumanStepFeedOptions options)
    : m_impl(std::make_unique<Impl>()) {
    Impl& m = *m_impl;
    m.state_dir = std::move(state_dir);
    m.log_path = m.state_dir + "/audit/ca.jsonl";
    m.options = std::move(options);
    if (m.options.poll_interval > std::chrono::milliseconds(200) ||
        m.options.poll_interval <= std::chrono::milliseconds(0))
        throw Error(ErrorCategory::invalid_input,
                    "FileHumanStepFeed: poll_interval must be 1 .. 200 ms");
    const std::string ca_pem = m.state_dir + "/ca.pem";
    struct stat st {};
    if (::stat(ca_pem.c_str(), &st) != 0)
        throw Error(ErrorCategory::not_found,
                    "FileHumanStepFeed: " + ca_pem + " does not exist (kakunin ca init)");
    m.ca.add_file(ca_pem);
    {
        std::lock_guard<std::mutex> lock(m.mutex);
        m.read_new();  // the history, before anyone subscribes
    }
    m.thread = std::thread([&m] { m.loop(); });
}

FileHumanStepFeed::~FileHumanStepFeed() {
    {
        std::lock_guard<std::mutex> lock(m_impl->wake_mutex);
        m_impl->stop = true;
    }
    m_impl->wake.notify_all();
    if (m_impl->thread.joinable()) m_impl->thread.join();
}

void FileHumanStepFeed::subscribe(HumanStepListener* listener) {
    std::lock_guard<std::mutex> lock(m_impl->mutex);
    m_impl->read_new();  // up to now: what was recorded before this call is history
    m_impl->listeners.reserve(m_impl->listeners.size() + 1);
    for (HumanStep s : m_impl->steps) {
        s.history = true;
        listener->on_human_step(s);
    }
    m_impl->listeners.push_back(listener);
}

void FileHumanStepFeed::unsubscribe(HumanStepListener* listener) noexcept {
    std::lock_guard<std::mutex> lock(m_impl->mutex);
    auto& l = m_impl->listeners;
    l.erase(std::remove(l.begin(), l.end(), listener), l.end());
}

std::size_t FileHumanStepFeed::steps_seen() const {
    std::lock_guard<std::mutex> lock(m_impl->mutex);
    return m_impl->steps.size();
}

}  // namespace kakunin
