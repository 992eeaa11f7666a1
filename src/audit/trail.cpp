// AuditTrail: the background writer behind the Guard's bounded queue.
#include "kakunin/audit_trail.hpp"

#include <condition_variable>
#include <mutex>
#include <nlohmann/json.hpp>

#include "kakunin/audit_writer.hpp"
#include "kakunin/replay.hpp"

namespace kakunin {
namespace {

/// The writer stamps each record with the time of the event it records (the decision's
/// clock reading), and checkpoints made while idle with the Guard's clock.
class EventClock final : public Clock {
public:
    explicit EventClock(const Clock& base) : m_base(base) {}
    TimeNs now_ns() const noexcept override { return m_event != 0 ? m_event : m_base.now_ns(); }
    void set(TimeNs t) noexcept { m_event = t; }
    void clear() noexcept { m_event = 0; }

private:
    const Clock& m_base;
    TimeNs m_event = 0;  // only the writer thread reads and writes it
};

std::string order_payload(const detail::AuditEntry& e) {
    nlohmann::json order;
    order["client_order_id"] = std::string(e.field(0));
    order["instrument"] = std::string(e.field(1));
    order["counterparty"] = std::string(e.field(2));
    order["region"] = std::string(e.field(3));
    order["side"] = to_string(e.side);
    order["quantity"] = to_string(e.quantity);
    order["price"] = to_string(e.price);
    if (e.has_reference) order["reference_price"] = to_string(e.reference_price);
    nlohmann::json p;
    p["order"] = std::move(order);
    p["decision"] = to_string(e.decision.verdict);
    p["reasons"] = nlohmann::json::array();
    for (ReasonCode r : e.decision.reasons) p["reasons"].push_back(to_string(r));
    p["score_ppm"] = e.decision.score_ppm;
    p["components_ppm"] = nlohmann::json::object();
    for (std::size_t i = 0; i < score_component_count; ++i)
        p["components_ppm"][component_name(i)] = e.decision.components_ppm[i];
    p["reasoning"] = std::string(e.field(4));
    if (e.reasoning_length > e.length[4]) p["reasoning_truncated_from"] = e.reasoning_length;
    // Invalid UTF-8 from the agent must not make the record unwritable: replace, keep the rest.
    return p.dump(-1, ' ', false, nlohmann::json::error_handler_t::replace);
}

std::string state_payload(const detail::AuditEntry& e) {
    nlohmann::json p;
    p["by"] = std::string(e.field(1));
    p["reason"] = std::string(e.field(2));
    return p.dump(-1, ' ', false, nlohmann::json::error_handler_t::replace);
}

std::string_view order_event(Verdict v) {
    switch (v) {
        case Verdict::allow: return audit_event::order_allowed;
        case Verdict::warn: return audit_event::order_warned;
        case Verdict::reject: return audit_event::order_rejected;
    }
    return audit_event::order_rejected;
}

}  // namespace

struct AuditTrail::Impl {
    Impl(AuditTrailOptions o, const Clock& c, std::shared_ptr<Kms> k, KeyHandle key,
         std::string agent, std::string fp)
        : options(std::move(o)), clock(c), event_clock(c), kms(std::move(k)) {
        if (!options.sink) throw Error(ErrorCategory::invalid_input, "audit trail: no sink");
        if (options.log_id.empty()) options.log_id = agent;
        AuditWriterOptions w;
        w.log_id = options.log_id;
        w.agent = agent;
        w.cert_fp = fp;
        w.checkpoint_every = options.checkpoint_every;
        w.checkpoint_interval_ns =
            std::chrono::duration_cast<std::chrono::nanoseconds>(options.checkpoint_interval)
                .count();
        AuditSigner signer{*kms, key, fp};
        std::optional<AuditSigner> record_signer;
        if (options.record_signatures) record_signer = signer;
        writer =
            std::make_unique<AuditLogWriter>(*options.sink, event_clock, signer, w, record_signer);
        durable.store(writer->durable_size());
    }

    AuditTrailOptions options;
    const Clock& clock;
    EventClock event_clock;
    std::shared_ptr<Kms> kms;
    std::unique_ptr<AuditLogWriter> writer;
    std::atomic<std::uint64_t> queued{0}, durable{0}, sink_failures{0};
    std::uint64_t base_records = 0;  // records already in the log when the trail opened
    mutable std::mutex wait_mutex;
    mutable std::condition_variable durable_changed;
};

AuditTrail::AuditTrail(AuditTrailOptions options, const Clock& clock, std::shared_ptr<Kms> kms,
                       KeyHandle key, std::string agent_id, std::string cert_fp)
    : m_impl(std::make_unique<Impl>(std::move(options), clock, std::move(kms), std::move(key),
                                    std::move(agent_id), std::move(cert_fp))),
      m_entries(std::max<std::size_t>(m_impl->options.queue_capacity, 16)),
      m_reserve(std::min(m_impl->options.reserve, m_entries.size() / 2)) {
    m_impl->base_records = m_impl->writer->size();
    m_thread = std::thread([this] { run(); });
}

AuditTrail::~AuditTrail() {
    m_stop.store(true, std::memory_order_release);
    if (m_thread.joinable()) m_thread.join();
}

const std::string& AuditTrail::log_id() const noexcept { return m_impl->options.log_id; }

AuditTrailCounters AuditTrail::counters() const noexcept {
    AuditTrailCounters c;
    c.queued = m_head.load(std::memory_order_acquire);
    c.durable = m_impl->durable.load(std::memory_order_acquire) - m_impl->base_records;
    c.unrecorded_rejections = m_unrecorded.load(std::memory_order_relaxed);
    c.sink_failures = m_impl->sink_failures.load(std::memory_order_relaxed);
    c.healthy = m_healthy.load(std::memory_order_relaxed);
    return c;
}

bool AuditTrail::wait_durable(std::chrono::milliseconds timeout) const {
    const std::uint64_t target = m_head.load(std::memory_order_acquire);
    std::unique_lock<std::mutex> lock(m_impl->wait_mutex);
    return m_impl->durable_changed.wait_for(lock, timeout, [&] {
        return m_impl->durable.load(std::memory_order_acquire) - m_impl->base_records >= target;
    });
}

void AuditTrail::run() noexcept {
    Impl& im = *m_impl;
    TimeNs failing_since = 0;
    std::chrono::steady_clock::time_point wall_since{}, stop_requested{};
    auto made_durable = [&] {
        im.durable.store(im.writer->durable_size(), std::memory_order_release);
        std::lock_guard<std::mutex> lock(im.wait_mutex);
        im.durable_changed.notify_all();
    };
    for (;;) {
        const bool stopping = m_stop.load(std::memory_order_acquire);
        const std::uint64_t tail = m_tail.load(std::memory_order_relaxed);
        const std::uint64_t head = m_head.load(std::memory_order_acquire);
        // While the sink is failing, hold entries in the queue rather than in memory.
        const bool backlog = im.writer->pending_lines() > im.options.batch_max;
        std::uint64_t taken = 0;
        if (!backlog) {
            const std::uint64_t n = std::min<std::uint64_t>(head - tail, im.options.batch_max);
            for (; taken < n; ++taken) {
                const detail::AuditEntry& e = m_entries[(tail + taken) % m_entries.size()];
                try {
                    im.event_clock.set(e.ts_ns);
                    if (e.kind == detail::AuditEntry::Kind::order)
                        im.writer->append(order_event(e.decision.verdict), order_payload(e));
                    else if (e.kind == detail::AuditEntry::Kind::state)
                        im.writer->append(e.field(0), state_payload(e));
                    else
                        im.writer->append(e.field(0), *e.payload);
                    if (e.kind == detail::AuditEntry::Kind::json) {
                        delete e.payload;
                        const_cast<detail::AuditEntry&>(e).payload = nullptr;
                    }
                    im.event_clock.clear();
                } catch (const Error&) {
                    im.event_clock.clear();
                    break;  // signing failed: retry this entry on the next round
                }
            }
            m_tail.store(tail + taken, std::memory_order_release);
        }
        bool wrote = false;
        try {
            if (im.writer->pending_lines() > 0 || im.writer->maybe_checkpoint()) {
                im.writer->flush();
                wrote = true;
            }
            failing_since = 0;
            m_healthy.store(true, std::memory_order_relaxed);
        } catch (...) {
            im.sink_failures.fetch_add(1, std::memory_order_relaxed);
            const TimeNs now = im.clock.now_ns();
            if (failing_since == 0) {
                failing_since = now;
                wall_since = std::chrono::steady_clock::now();
            }
            const auto grace =
                std::chrono::duration_cast<std::chrono::nanoseconds>(im.options.sink_failure_grace)
                    .count();
            // A real outage is measured on the wall clock even when the Guard's clock is
            // simulated; either reaching the grace period is enough.
            if (now - failing_since >= grace ||
                std::chrono::steady_clock::now() - wall_since >= im.options.sink_failure_grace)
                m_healthy.store(false, std::memory_order_relaxed);
            std::this_thread::sleep_for(std::chrono::milliseconds(5));
        }
        if (wrote) made_durable();
        if (stopping && stop_requested == std::chrono::steady_clock::time_point{})
            stop_requested = std::chrono::steady_clock::now();
        // Shutting down on a sink that keeps failing: give up after a bound rather than hang;
        // what was not made durable is visible in counters() (queued > durable).
        if (stopping && failing_since != 0 &&
            std::chrono::steady_clock::now() - stop_requested > std::chrono::seconds(5))
            return;
        if (stopping &&
            m_tail.load(std::memory_order_relaxed) == m_head.load(std::memory_order_acquire)) {
            try {
                im.writer->close();
                made_durable();
            } catch (...) {
                im.sink_failures.fetch_add(1, std::memory_order_relaxed);
            }
            return;
        }
        if (taken == 0 && !wrote) std::this_thread::sleep_for(std::chrono::microseconds(200));
    }
}

}  // namespace kakunin
