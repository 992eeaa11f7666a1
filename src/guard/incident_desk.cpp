// The incident desk (incident_desk.hpp): incidents from anomalies, escalations, the automatic
// revocation and replacement request, human steps, and notification delivery.
#include "guard/incident_desk.hpp"

#include <algorithm>
#include <cstdio>

#include <nlohmann/json.hpp>

#include "kakunin/audit_record.hpp"
#include "kakunin/ca.hpp"
#include "kakunin/error.hpp"
#include "kakunin/replay.hpp"
#include "kakunin/shared_threads.hpp"
#include "runtime/task_thread.hpp"

namespace kakunin {
namespace {

using json = nlohmann::json;

std::string dump(const json& j) { return j.dump(-1, ' ', false, json::error_handler_t::replace); }

json components_json(const std::array<std::uint32_t, score_component_count>& c) {
    json j = json::object();
    for (std::size_t i = 0; i < score_component_count; ++i) j[component_name(i)] = c[i];
    return j;
}

json order_json(const detail::AuditEntry& e) {
    json o = {{"client_order_id", std::string(e.field(0))},
              {"instrument", std::string(e.field(1))},
              {"counterparty", std::string(e.field(2))},
              {"region", std::string(e.field(3))},
              {"side", to_string(e.side)},
              {"quantity", to_string(e.quantity)},
              {"price", to_string(e.price)}};
    if (e.has_reference) o["reference_price"] = to_string(e.reference_price);
    return o;
}

/// "0.81" from 810000 ppm: for human summaries only.
std::string score_text(std::uint32_t ppm) {
    char buf[16];
    const std::uint32_t hundredths = (ppm + 5'000) / 10'000;  // rounded, as printf would
    std::snprintf(buf, sizeof buf, "%u.%02u", hundredths / 100, hundredths % 100);
    return buf;
}

/// The components worth naming in a summary: those at or above 0.10, largest first.
std::string explain(const std::array<std::uint32_t, score_component_count>& c) {
    std::array<std::size_t, score_component_count> order{};
    for (std::size_t i = 0; i < order.size(); ++i) order[i] = i;
    std::sort(order.begin(), order.end(),
              [&](std::size_t a, std::size_t b) { return c[a] > c[b]; });
    std::string out;
    for (std::size_t i : order) {
        if (c[i] < 100'000) break;
        out += (out.empty() ? "" : ", ") + std::string(component_name(i)) + " " + score_text(c[i]);
    }
    return out.empty() ? "no single component stands out" : out;
}

}  // namespace

const char* to_string(IncidentState s) noexcept {
    switch (s) {
        case IncidentState::open: return "open";
        case IncidentState::acknowledged: return "acknowledged";
        case IncidentState::resolved: return "resolved";
        case IncidentState::revoked: return "revoked";
        case IncidentState::reviewed: return "reviewed";
    }
    return "unknown";
}

std::string to_json(const Incident& i) {
    json history = json::array();
    for (const auto& t : i.history)
        history.push_back(
            {{"state", to_string(t.state)}, {"at_ns", t.at_ns}, {"by", t.by}, {"note", t.note}});
    json trigger =
        i.trigger_order_json.empty() ? json::object() : json::parse(i.trigger_order_json);
    return dump({{"incident", i.id},
                 {"agent", i.agent_id},
                 {"opened_at_ns", i.opened_at_ns},
                 {"deadline_ns", i.deadline_ns},
                 {"score_ppm", i.score_ppm},
                 {"components_ppm", components_json(i.components_ppm)},
                 {"trigger_order", trigger},
                 {"state", to_string(i.state)},
                 {"escalated", i.escalated},
                 {"warnings", i.warnings},
                 {"last_warning_ns", i.last_warning_ns},
                 {"history", history}});
}

namespace detail {

/// One pass every 2 ms on the shared incident thread, as loop() does on the desk's own.
struct IncidentDesk::Pass final : TaskThread::Task {
    explicit Pass(IncidentDesk& d) : desk(d), thread(incident_thread(*d.m_options.shared)) {}
    std::chrono::microseconds run() noexcept override {
        if (desk.m_stop.load(std::memory_order_acquire)) return idle;
        try {
            desk.process();
        } catch (const std::exception& e) {
            desk.m_hooks.report(std::string("incident handling failed: ") + e.what());
        } catch (...) {
            desk.m_hooks.report("incident handling failed: an exception with no message");
        }
        return std::chrono::milliseconds(2);
    }
    IncidentDesk& desk;
    TaskThread& thread;
};

IncidentDesk::IncidentDesk(const Clock& clock, Options options, Hooks hooks)
    : m_clock(clock), m_options(std::move(options)), m_hooks(std::move(hooks)) {}

IncidentDesk::~IncidentDesk() { stop(); }

void IncidentDesk::enforce(const ScoringPolicy& policy) {
    std::lock_guard<std::mutex> lock(m_mutex);
    if (m_ring_storage == nullptr) {
        m_ring_storage = std::make_unique<Ring>(256);
        m_anomalies.store(m_ring_storage.get(), std::memory_order_release);
    }
    m_policy = policy;
}

void IncidentDesk::start() {
    if (!m_options.thread) return;
    std::lock_guard<std::mutex> lock(m_thread_mutex);
    if (m_options.shared) {
        if (m_pass) return;
        m_pass = std::make_unique<Pass>(*this);
        m_pass->thread.add(*m_pass);
        m_pass_task.store(m_pass.get(), std::memory_order_release);
        return;
    }
    if (!m_thread.joinable()) m_thread = std::thread([this] { loop(); });
}

void IncidentDesk::stop() noexcept {
    m_stop.store(true, std::memory_order_release);
    m_wake.notify_all();
    std::lock_guard<std::mutex> lock(m_thread_mutex);
    if (m_thread.joinable()) m_thread.join();
    if (m_pass) {
        m_pass_task.store(nullptr, std::memory_order_release);
        m_pass->thread.remove(*m_pass);  // waits for a pass in progress
        m_pass.reset();
    }
}

void IncidentDesk::wake() noexcept {
    m_wake.notify_all();
    // On a shared thread: a pass now. A wake racing stop() at worst names a task just removed,
    // which the thread then does not find (it compares addresses only).
    if (TaskThread::Task* pass = m_pass_task.load(std::memory_order_acquire))
        m_pass_thread->wake(*pass);
}

void IncidentDesk::push_anomaly(const Order& o, const Decision& d) noexcept {
    // Scoring (and so this call) starts only after enforce() created the ring.
    Ring* ring = m_anomalies.load(std::memory_order_acquire);
    AuditEntry* e = ring != nullptr ? ring->claim() : nullptr;
    if (e == nullptr) {
        ++m_anomalies_dropped;  // an incident is open already; the audit has the order
        return;
    }
    e->kind = AuditEntry::Kind::order;
    e->ts_ns = d.ts_ns;
    e->decision = d;
    e->side = o.side;
    e->quantity = o.quantity;
    e->price = o.price;
    e->has_reference = o.reference_price.has_value();
    if (e->has_reference) e->reference_price = *o.reference_price;
    const std::string_view fields[4] = {o.client_order_id, o.instrument, o.counterparty, o.region};
    e->set_text(fields, 4);
    ring->publish();
}

void IncidentDesk::notify(Notification::Kind kind, const Incident* incident, TimeNs at,
                          std::string summary, std::string details_json) noexcept {
    if (!m_options.notifier) return;
    try {
        Notification n;
        n.kind = kind;
        n.agent_id = m_options.agent_id;
        n.at_ns = at;
        n.summary = std::move(summary);
        n.details_json = std::move(details_json);
        if (incident != nullptr) {
            n.incident_id = incident->id;
            n.score_ppm = incident->score_ppm;
            n.components_ppm = incident->components_ppm;
            n.details_json = dump({{"state", to_string(incident->state)},
                                   {"deadline_ns", incident->deadline_ns},
                                   {"trigger_order", json::parse(incident->trigger_order_json)}});
        }
        {
            std::lock_guard<std::mutex> lock(m_notes_mutex);
            m_notes.push_back(std::move(n));
        }
        m_notes_queued.fetch_add(1, std::memory_order_release);
        m_wake.notify_all();
    } catch (...) {
        m_hooks.report("notifier: could not build a notification");
    }
}

void IncidentDesk::deliver_notifications() noexcept {
    if (!m_options.notifier) return;
    std::vector<Notification> batch;
    {
        std::lock_guard<std::mutex> lock(m_notes_mutex);
        batch.swap(m_notes);
    }
    for (const Notification& n : batch) m_options.notifier->notify(n);
    m_notes_delivered.fetch_add(batch.size(), std::memory_order_release);
}

void IncidentDesk::handle_anomaly(const AuditEntry& e) {
    const Decision& d = e.decision;
    const bool revocation = d.reasons.contains(ReasonCode::anomaly_revocation);
    std::unique_lock<std::mutex> lock(m_mutex);
    const ScoringPolicy& policy = *m_policy;  // anomalies come only from scoring (enforce())
    const std::string& agent = m_options.agent_id;
    // A warning belongs to the incident still being worked on: open or acknowledged, with a
    // warning within the last investigation window. Later warnings open a new incident, so a
    // forgotten incident neither swallows new anomalies nor hides how many there were.
    const TimeNs window = static_cast<TimeNs>(policy.investigation_window_s) * 1'000'000'000;
    Incident* active = nullptr;
    for (auto& i : m_incidents)
        if ((i.state == IncidentState::open || i.state == IncidentState::acknowledged) &&
            d.ts_ns - i.last_warning_ns < window)
            active = &i;
    if (active != nullptr && !revocation) {
        ++active->warnings;
        active->last_warning_ns = d.ts_ns;
        return;
    }
    if (active == nullptr) {
        Incident inc;
        inc.agent_id = agent;
        inc.opened_at_ns = d.ts_ns;
        inc.id = m_hooks.new_id("inc", d.ts_ns, m_incidents.size() + 1);
        inc.deadline_ns =
            d.ts_ns + static_cast<TimeNs>(policy.investigation_window_s) * 1'000'000'000;
        inc.score_ppm = d.score_ppm;
        inc.components_ppm = d.components_ppm;
        inc.trigger_order_json = dump(order_json(e));
        inc.warnings = revocation ? 0 : 1;
        inc.last_warning_ns = d.ts_ns;
        inc.history.push_back(
            {IncidentState::open, d.ts_ns, "kakunin",
             "anomaly score " + score_text(d.score_ppm) + ": " + explain(d.components_ppm)});
        m_incidents.push_back(std::move(inc));
        active = &m_incidents.back();
        m_hooks.audit(d.ts_ns, audit_event::incident_opened,
                      dump({{"incident", active->id},
                            {"agent", agent},
                            {"trigger",
                             {{"order", order_json(e)},
                              {"score_ppm", d.score_ppm},
                              {"components_ppm", components_json(d.components_ppm)}}},
                            {"window_ms", std::uint64_t{policy.investigation_window_s} * 1000}}));
        if (!revocation)
            notify(Notification::Kind::warning, active, d.ts_ns,
                   agent + ": anomaly score " + score_text(d.score_ppm) + " (" +
                       explain(d.components_ppm) + "); incident " + active->id +
                       " opened, acknowledge within " +
                       std::to_string(policy.investigation_window_s) + " s");
    }
    if (!revocation) return;

    // Automatic revocation: the Guard halted in check(); now the certificate, compliance and
    // the replacement. Incidents are only ever appended, and only here (one pass at a time):
    // the index survives the lock being let go.
    const std::size_t index = static_cast<std::size_t>(active - m_incidents.data());
    const std::string incident_id = active->id;
    const std::uint32_t revoke_ppm = policy.revoke_ppm;
    // check() halted and audited it; this gives the halt its id, history and notification.
    const std::string serial = m_hooks.record_automatic_halt(
        d.ts_ns,
        "automatic halt: anomaly score " + score_text(d.score_ppm) + ", incident " + incident_id);
    const std::string reason = "anomaly score " + score_text(d.score_ppm) +
                               " >= " + score_text(revoke_ppm) + " (" + explain(d.components_ppm) +
                               "), incident " + incident_id;
    std::string ca_result = "no certificate authority configured";
    if (m_options.authority && !serial.empty()) {
        // A CA may take seconds (a remote service, an HSM, a database): meanwhile people still
        // read, acknowledge and resolve incidents. Another pass cannot start (m_process_mutex).
        lock.unlock();
        try {
            m_options.authority->revoke(serial, "keyCompromise: " + reason);
            ca_result = "revoked";
        } catch (const std::exception& x) {
            ca_result = std::string("the CA refused: ") + x.what();
            m_hooks.report("automatic revocation of " + serial + " failed: " + x.what());
        }
        lock.lock();
    }
    active = &m_incidents[index];
    active->state = IncidentState::revoked;
    active->score_ppm = std::max(active->score_ppm, d.score_ppm);
    active->history.push_back(
        {IncidentState::revoked, d.ts_ns, "kakunin", reason + "; CA: " + ca_result});
    m_hooks.audit(d.ts_ns, "incident.revoked",
                  dump({{"incident", incident_id},
                        {"agent", agent},
                        {"serial", serial},
                        {"reason", reason},
                        {"ca", ca_result},
                        {"order", order_json(e)},
                        {"score_ppm", d.score_ppm},
                        {"components_ppm", components_json(d.components_ppm)}}));
    notify(Notification::Kind::revocation, active, d.ts_ns,
           agent + ": halted and certificate " + serial + " revoked automatically: " + reason);
    m_hooks.audit(d.ts_ns, "incident.replacement_requested",
                  dump({{"incident", incident_id},
                        {"agent", agent},
                        {"replacement_for_serial", serial},
                        {"reason",
                         "a new agent with a new key; its baseline must be approved "
                         "before it enforces"}}));
    lock.unlock();  // the firm's callback may take its time, or look at the incidents
    if (m_options.on_replacement_request) {
        const ReplacementRequest request{agent, incident_id, serial, reason, d.ts_ns};
        try {
            m_options.on_replacement_request(request);
        } catch (...) {
            m_hooks.report("on_replacement_request threw");
        }
    }
}

void IncidentDesk::check_deadlines(TimeNs now) {
    std::lock_guard<std::mutex> lock(m_mutex);
    if (!m_policy) return;
    const ScoringPolicy& policy = *m_policy;
    const std::string& agent = m_options.agent_id;
    for (auto& i : m_incidents) {
        if (i.state != IncidentState::open || i.escalated || now < i.deadline_ns) continue;
        i.escalated = true;
        const bool halt_it = policy.halt_on_escalation;
        i.history.push_back({i.state, now, "kakunin",
                             std::string("not acknowledged within the investigation window: ") +
                                 (halt_it ? "halted" : "escalated")});
        m_hooks.audit(
            now, "incident.escalated",
            dump({{"incident", i.id}, {"agent", agent}, {"action", halt_it ? "halt" : "notify"}}));
        notify(Notification::Kind::escalation, &i, now,
               agent + ": incident " + i.id + " not acknowledged within " +
                   std::to_string(policy.investigation_window_s) + " s" +
                   (halt_it ? "; the agent is halted" : ""));
        if (halt_it)
            m_hooks.halt_for_escalation(
                now, "automatic halt: incident " + i.id + " not acknowledged in time");
    }
}

void IncidentDesk::process() {
    std::lock_guard<std::mutex> pass(m_process_mutex);
    bool scoring;
    {
        std::lock_guard<std::mutex> lock(m_mutex);
        scoring = m_policy.has_value();
    }
    if (scoring) {
        Ring& ring = *m_anomalies.load(std::memory_order_acquire);
        while (const AuditEntry* e = ring.front()) {
            handle_anomaly(*e);
            ring.pop();
        }
    }
    if (scoring || m_hooks.tick) {
        const TimeNs now = m_hooks.latest_time();
        if (scoring) check_deadlines(now);
        if (m_hooks.tick) {
            try {
                m_hooks.tick(now);
            } catch (const std::exception& x) {
                m_hooks.report(std::string("periodic deadline work failed: ") + x.what());
            }
        }
    }
    deliver_notifications();
}

void IncidentDesk::loop() {
    while (!m_stop.load(std::memory_order_acquire)) {
        try {
            process();
        } catch (const std::exception& e) {
            m_hooks.report(std::string("incident handling failed: ") + e.what());
        }
        std::unique_lock<std::mutex> lock(m_wake_mutex);
        // check() never signals (no syscall on the hot path): a short poll bounds the delay.
        m_wake.wait_for(lock, std::chrono::milliseconds(2));
    }
}

bool IncidentDesk::wait(std::chrono::milliseconds timeout) {
    const auto until = std::chrono::steady_clock::now() + timeout;
    for (;;) {
        const Ring* ring = m_anomalies.load(std::memory_order_acquire);
        const std::uint64_t head = ring != nullptr ? ring->pushed() : 0;
        const std::uint64_t notes = m_notes_queued.load(std::memory_order_acquire);
        auto handled = [&] {
            return (ring == nullptr || ring->popped() == head) &&
                   m_notes_delivered.load(std::memory_order_acquire) == notes;
        };
        if (handled()) {
            // The last one may still be in handling: wait for the pass once to be sure.
            std::lock_guard<std::mutex> pass(m_process_mutex);
            if (handled()) return true;
        }
        if (!m_options.thread) process();
        if (std::chrono::steady_clock::now() >= until) return false;
        std::this_thread::sleep_for(std::chrono::milliseconds(1));
    }
}

void IncidentDesk::restore(std::string_view event, TimeNs at, const json& p) {
    auto text = [&](const char* member) -> std::string {
        auto it = p.find(member);
        if (it == p.end() || !it->is_string())
            throw Error(ErrorCategory::invalid_input,
                        std::string(event) + " record: " + member + ": missing or not a string");
        return it->get<std::string>();
    };
    auto ppm = [&](const json& j, const char* member) -> std::uint32_t {
        auto it = j.find(member);
        return it != j.end() && it->is_number_unsigned() ? it->get<std::uint32_t>() : 0;
    };
    std::lock_guard<std::mutex> lock(m_mutex);
    if (event == audit_event::order_warned) {
        // Counted on the incident being worked on, as handle_anomaly() counts it; the warning
        // that opened an incident is recorded before the incident (and counted by it).
        for (auto it = m_incidents.rbegin(); it != m_incidents.rend(); ++it)
            if ((it->state == IncidentState::open || it->state == IncidentState::acknowledged) &&
                at > it->last_warning_ns &&
                at - it->last_warning_ns < it->deadline_ns - it->opened_at_ns) {
                ++it->warnings;
                it->last_warning_ns = at;
                break;
            }
        return;
    }
    if (event == audit_event::incident_opened) {
        Incident inc;
        inc.id = text("incident");
        inc.agent_id = m_options.agent_id;
        inc.opened_at_ns = at;
        const auto window = p.find("window_ms");
        if (window == p.end() || !window->is_number_unsigned())
            throw Error(ErrorCategory::invalid_input,
                        "incident.opened record: window_ms: missing or not an integer");
        inc.deadline_ns = at + static_cast<TimeNs>(window->get<std::uint64_t>()) * 1'000'000;
        const auto trigger = p.find("trigger");
        if (trigger != p.end() && trigger->is_object()) {
            inc.score_ppm = ppm(*trigger, "score_ppm");
            const auto comps = trigger->find("components_ppm");
            if (comps != trigger->end() && comps->is_object())
                for (std::size_t c = 0; c < score_component_count; ++c)
                    inc.components_ppm[c] = ppm(*comps, component_name(c));
            const auto order = trigger->find("order");
            if (order != trigger->end()) inc.trigger_order_json = dump(*order);
        }
        inc.warnings = 1;
        inc.last_warning_ns = at;
        inc.history.push_back({IncidentState::open, at, "kakunin",
                               "anomaly score " + score_text(inc.score_ppm) + ": " +
                                   explain(inc.components_ppm) + " (restored from the log)"});
        m_incidents.push_back(std::move(inc));
        return;
    }
    const bool review = event == audit_event::review_signed;
    if (!review && event.substr(0, 9) != "incident.") return;
    const std::string id = text(review ? "incident_id" : "incident");
    Incident* i = nullptr;
    for (auto& candidate : m_incidents)
        if (candidate.id == id) i = &candidate;
    if (i == nullptr) return;  // opened before what this log holds: nothing to restore
    auto step = [&](IncidentState state, std::string by, std::string note) {
        i->state = state;
        i->history.push_back({state, at, std::move(by), std::move(note)});
    };
    if (event == "incident.acknowledged") {
        step(IncidentState::acknowledged, text("by"), text("note"));
    } else if (event == "incident.resolved") {
        step(IncidentState::resolved, text("by"), text("note"));
    } else if (event == "incident.escalated") {
        i->escalated = true;
        i->history.push_back({i->state, at, "kakunin",
                              "not acknowledged within the investigation window: " +
                                  std::string(text("action") == "halt" ? "halted" : "escalated")});
    } else if (event == "incident.revoked") {
        if (i->history.size() == 1) i->warnings = 0;  // opened by the revocation itself
        i->score_ppm = std::max(i->score_ppm, ppm(p, "score_ppm"));
        step(IncidentState::revoked, "kakunin", text("reason") + "; CA: " + text("ca"));
    } else if (review) {
        step(IncidentState::reviewed, text("reviewer"), text("root_cause"));
    }
}

std::vector<Incident> IncidentDesk::incidents() const {
    std::lock_guard<std::mutex> lock(m_mutex);
    return m_incidents;
}

void IncidentDesk::acknowledge(std::string_view id, std::string_view by, std::string_view note) {
    std::lock_guard<std::mutex> lock(m_mutex);
    for (auto& i : m_incidents) {
        if (i.id != id) continue;
        if (i.state != IncidentState::open)
            throw Error(ErrorCategory::invalid_state,
                        "acknowledge: incident " + i.id + " is " + to_string(i.state));
        const TimeNs now = m_clock.now_ns();
        i.state = IncidentState::acknowledged;
        i.history.push_back({i.state, now, std::string(by), std::string(note)});
        m_hooks.audit(
            now, "incident.acknowledged",
            dump({{"incident", i.id}, {"agent", m_options.agent_id}, {"by", by}, {"note", note}}));
        return;
    }
    throw Error(ErrorCategory::not_found, "acknowledge: no incident " + std::string(id));
}

void IncidentDesk::resolve(std::string_view id, std::string_view by, std::string_view note) {
    std::lock_guard<std::mutex> lock(m_mutex);
    for (auto& i : m_incidents) {
        if (i.id != id) continue;
        if (i.state != IncidentState::open && i.state != IncidentState::acknowledged)
            throw Error(ErrorCategory::invalid_state,
                        "resolve: incident " + i.id + " is " + to_string(i.state));
        const TimeNs now = m_clock.now_ns();
        i.state = IncidentState::resolved;
        i.history.push_back({i.state, now, std::string(by), std::string(note)});
        m_hooks.audit(
            now, "incident.resolved",
            dump({{"incident", i.id}, {"agent", m_options.agent_id}, {"by", by}, {"note", note}}));
        notify(Notification::Kind::incident, &i, now,
               m_options.agent_id + ": incident " + i.id + " resolved by " + std::string(by) +
                   (note.empty() ? "" : ": " + std::string(note)));
        return;
    }
    throw Error(ErrorCategory::not_found, "resolve: no incident " + std::string(id));
}

void IncidentDesk::review(const IncidentReview& review) {
    std::lock_guard<std::mutex> lock(m_mutex);
    for (auto& i : m_incidents) {
        if (i.id != review.incident_id) continue;
        if (i.state != IncidentState::revoked)
            throw Error(ErrorCategory::invalid_state,
                        "review: incident " + i.id + " is " + to_string(i.state) + ", not revoked");
        i.state = IncidentState::reviewed;
        i.history.push_back({i.state, review.signed_at_ns, review.reviewer, review.root_cause});
        m_hooks.audit(m_clock.now_ns(), audit_event::review_signed, to_json(review));
        notify(Notification::Kind::incident, &i, m_clock.now_ns(),
               m_options.agent_id + ": incident " + i.id + " reviewed by " + review.reviewer +
                   " (signed): " + review.root_cause);
        return;
    }
    throw Error(ErrorCategory::not_found, "review: no incident " + review.incident_id);
}

}  // namespace detail
}  // namespace kakunin
