// The incident desk (src/guard/incident_desk.hpp): the CA's revoke() runs outside the incident
// lock, so people can read and acknowledge incidents while a slow CA revokes; the periodic tick
// the desk's loop offers; and the one SPSC ring behind the audit queue and the anomaly ring.
#include <atomic>
#include <catch2/catch.hpp>
#include <chrono>
#include <condition_variable>
#include <future>
#include <memory>
#include <mutex>
#include <string>
#include <thread>
#include <vector>

#include "guard/incident_desk.hpp"
#include "kakunin/baseline.hpp"
#include "kakunin/ca.hpp"
#include "kakunin/detail/spsc_ring.hpp"
#include "kakunin/guard.hpp"
#include "kakunin/incident.hpp"
#include "kakunin/notifier.hpp"
#include "kakunin/testing.hpp"

using namespace kakunin;

namespace {

const char* const scope_json = R"({
  "version": 1,
  "max_transaction": {"currency": "EUR", "amount": "50000000.00"},
  "instruments": ["BTC_EUR", "ETH_EUR", "SOL_EUR"],
  "counterparties": ["exchange_a"],
  "trading_hours": [{"days": ["Mon","Tue","Wed","Thu","Fri","Sat","Sun"], "from": "00:00", "to": "24:00"}],
  "regions": ["eu-west-1", "eu-central-1"],
  "limits": {"max_orders_per_second": 50}
})";

const TimeNs minute_ns = 60'000'000'000LL;
const TimeNs day_ns = 24 * 60 * minute_ns;
const TimeNs start = utc(2024, 1, 8, 0, 0, 0);  // a Monday

Order order(const char* instrument, const char* region, const char* quantity) {
    Order o;
    o.client_order_id = "t";
    o.instrument = instrument;
    o.counterparty = "exchange_a";
    o.region = region;
    o.quantity = parse_decimal(quantity);
    o.price = parse_decimal("40000");
    return o;
}

/// Seven days of BTC_EUR orders in eu-west-1 every 2 minutes, 06:00 to 21:59 UTC.
Baseline learn(const std::string& agent) {
    BaselineBuilder b(parse_scope_json(scope_json), agent);
    b.start(start);
    unsigned n = 0;
    for (TimeNs t = start; t < start + 7 * day_ns; t += 2 * minute_ns) {
        const auto h = floor_div(floor_mod(t, day_ns), 60 * minute_ns);
        if (h < 6 || h >= 22) continue;
        b.observe(order("BTC_EUR", "eu-west-1", ("0." + std::to_string(n++ % 10) + "5").c_str()),
                  t);
    }
    return b.finalize(start + 7 * day_ns);
}

/// A CA whose revoke() waits until the test lets it go (or `patience` passes), then revokes on
/// the real CA underneath. Records whether it was let go or gave up.
class GatedCa final : public CertificateAuthority {
public:
    GatedCa(CertificateAuthority& inner, std::chrono::milliseconds patience)
        : m_inner(inner), m_patience(patience) {}

    AgentCertificate issue(const IssueRequest& request) override { return m_inner.issue(request); }
    void revoke(std::string_view serial_hex, std::string_view reason) override {
        {
            std::unique_lock<std::mutex> lock(m_mutex);
            m_entered = true;
            m_changed.notify_all();
            if (!m_changed.wait_for(lock, m_patience, [&] { return m_released; })) m_gave_up = true;
        }
        m_inner.revoke(serial_hex, reason);
    }
    CertificateRevocationList current_crl() override { return m_inner.current_crl(); }
    TrustAnchor trust_anchor() const override { return m_inner.trust_anchor(); }

    bool wait_entered(std::chrono::milliseconds timeout) {
        std::unique_lock<std::mutex> lock(m_mutex);
        return m_changed.wait_for(lock, timeout, [&] { return m_entered; });
    }
    void release() {
        std::lock_guard<std::mutex> lock(m_mutex);
        m_released = true;
        m_changed.notify_all();
    }
    bool gave_up() const {
        std::lock_guard<std::mutex> lock(m_mutex);
        return m_gave_up;
    }

private:
    CertificateAuthority& m_inner;
    std::chrono::milliseconds m_patience;
    mutable std::mutex m_mutex;
    std::condition_variable m_changed;
    bool m_entered = false, m_released = false, m_gave_up = false;
};

}  // namespace

TEST_CASE("incidents can be read and acknowledged while the CA's revoke() is still running",
          "[incident][desk][threads]") {
    TestAuthority authority(start + 7 * day_ns + 10 * 60 * minute_ns);  // Monday 10:00
    GuardCredentials credentials = authority.credentials_for(parse_scope_json(scope_json));
    const std::string agent = credentials.certificate.agent_id();
    const std::string serial = credentials.certificate.serial();
    const Baseline baseline = learn(agent);
    auto ca = std::make_shared<GatedCa>(authority.ca(), std::chrono::milliseconds(3000));
    auto notes = std::make_shared<MemoryNotifier>();
    GuardOptions o;
    o.baseline = ApprovedBaseline{baseline, approve_baseline(*authority.kms(), baseline,
                                                             "C. Officer", start + 7 * day_ns, 1)};
    o.notifier = notes;
    o.authority = ca;
    o.incident_thread = true;
    Guard guard(credentials, authority.clock(), o);

    // Another instrument in another region, 100 times the usual size: revoked in this call.
    const Decision d = guard.check(order("SOL_EUR", "eu-central-1", "100"));
    REQUIRE(d.reasons.contains(ReasonCode::anomaly_revocation));
    REQUIRE(ca->wait_entered(std::chrono::seconds(10)));

    // The incident thread is inside revoke(): a person can still see the incident and take it.
    const auto started = std::chrono::steady_clock::now();
    const std::vector<Incident> during = guard.incidents();
    REQUIRE(during.size() == 1);
    CHECK(during[0].state == IncidentState::open);
    CHECK_NOTHROW(
        guard.acknowledge_incident(during[0].id, "On Call", "looking while the CA revokes"));
    const auto waited = std::chrono::steady_clock::now() - started;
    ca->release();
    CHECK(waited < std::chrono::milliseconds(2000));

    REQUIRE(guard.wait_incidents(std::chrono::seconds(10)));
    CHECK_FALSE(ca->gave_up());  // let go by the test, not by its patience running out
    CHECK(authority.ca().is_revoked(serial));
    const std::vector<Incident> after = guard.incidents();
    REQUIRE(after.size() == 1);
    CHECK(after[0].state == IncidentState::revoked);
    // opened, acknowledged (during the revocation), revoked with the CA's outcome
    REQUIRE(after[0].history.size() == 3);
    CHECK(after[0].history[1].state == IncidentState::acknowledged);
    CHECK(after[0].history[2].state == IncidentState::revoked);
    CHECK(after[0].history[2].note.find("CA: revoked") != std::string::npos);
    const auto sent = notes->notifications();
    REQUIRE_FALSE(sent.empty());
    CHECK(sent.back().kind == Notification::Kind::revocation);
    CHECK(guard.halted());
    CHECK(guard.revoked());
}

TEST_CASE("the Notifier and the replacement callback may look at the incidents",
          "[incident][desk][threads]") {
    TestAuthority authority(start + 7 * day_ns + 10 * 60 * minute_ns);
    GuardCredentials credentials = authority.credentials_for(parse_scope_json(scope_json));
    const Baseline baseline = learn(credentials.certificate.agent_id());
    Guard* guard = nullptr;
    // Each callback reads the incidents from another thread and waits a second for the answer;
    // the futures outlive the callback, so a read still blocked cannot block the callback.
    std::vector<std::future<std::size_t>> reads;
    std::vector<std::string> answered_in_time;
    auto look = [&](const std::string& who) {
        reads.push_back(std::async(std::launch::async, [&] { return guard->incidents().size(); }));
        if (reads.back().wait_for(std::chrono::seconds(1)) == std::future_status::ready)
            answered_in_time.push_back(who);
    };
    GuardOptions o;
    o.baseline = ApprovedBaseline{baseline, approve_baseline(*authority.kms(), baseline,
                                                             "C. Officer", start + 7 * day_ns, 1)};
    o.notifier = std::make_shared<CallbackNotifier>(
        [&](const Notification& n) { look(std::string("notifier:") + to_string(n.kind)); });
    o.authority = std::shared_ptr<CertificateAuthority>(&authority.ca(), [](auto*) {});
    o.on_replacement_request = [&](const ReplacementRequest&) { look("replacement"); };
    o.incident_thread = false;
    Guard g(credentials, authority.clock(), o);
    guard = &g;

    REQUIRE(g.check(order("SOL_EUR", "eu-central-1", "100"))
                .reasons.contains(ReasonCode::anomaly_revocation));
    g.process_incidents();
    // halt and revocation notifications, and the replacement request
    REQUIRE(reads.size() == 3);
    for (auto& r : reads) CHECK(r.get() == 1);
    CHECK(answered_in_time ==
          std::vector<std::string>{"replacement", "notifier:halt", "notifier:revocation"});
    CHECK(g.incidents().at(0).state == IncidentState::revoked);
}

namespace {

struct Counted {
    std::uint64_t value = 0;
};

/// A thread publishing `n` items into `ring`, the i-th holding i * 7 + 1, waiting while full.
std::thread produce(detail::SpscRing<Counted>& ring, std::uint64_t n) {
    return std::thread([&ring, n] {
        for (std::uint64_t i = 0; i < n;) {
            Counted* c = ring.claim();
            if (c == nullptr) {
                std::this_thread::yield();
                continue;
            }
            c->value = i * 7 + 1;
            ring.publish();
            ++i;
        }
    });
}

}  // namespace

TEST_CASE("the SPSC ring is empty, fills to its capacity and wraps around in order", "[ring]") {
    CHECK_THROWS_AS(detail::SpscRing<Counted>(0), std::invalid_argument);
    detail::SpscRing<Counted> ring(3);
    CHECK(ring.capacity() == 3);
    CHECK(ring.empty());
    CHECK(ring.front() == nullptr);
    CHECK(ring.peek(0) == nullptr);

    std::uint64_t next_in = 0, next_out = 0;
    for (int round = 0; round < 5; ++round) {  // five times round a ring of three
        for (int i = 0; i < 3; ++i) {
            Counted* c = ring.claim();
            REQUIRE(c != nullptr);
            c->value = next_in++;
            ring.publish();
        }
        CHECK(ring.size() == 3);
        CHECK(ring.claim() == nullptr);  // full: nothing overwritten
        REQUIRE(ring.peek(2) != nullptr);
        CHECK(ring.peek(2)->value == next_out + 2);
        CHECK(ring.peek(3) == nullptr);
        // Take two, leave one across the wrap.
        for (int i = 0; i < 2; ++i) {
            REQUIRE(ring.front() != nullptr);
            CHECK(ring.front()->value == next_out++);
            ring.pop();
        }
        CHECK(ring.size() == 1);
        Counted* c = ring.claim();
        REQUIRE(c != nullptr);
        c->value = next_in++;
        ring.publish();
        ring.pop(2);  // a batch given back at once
        next_out += 2;
        CHECK(ring.empty());
    }
    CHECK(ring.pushed() == next_in);
    CHECK(ring.popped() == next_out);
    // A claim not published is not seen, and the slot is claimed again.
    Counted* c = ring.claim();
    REQUIRE(c != nullptr);
    c->value = 999;
    CHECK(ring.front() == nullptr);
    CHECK(ring.claim() == c);
}

TEST_CASE(
    "the SPSC ring's producer reads the consumer's index only when its copy says full, "
    "and never sees fewer entries than there are",
    "[ring]") {
    detail::SpscRing<Counted> ring(4);
    for (int i = 0; i < 4; ++i) {
        REQUIRE(ring.claim() != nullptr);
        ring.publish();
    }
    CHECK(ring.size_seen() == 4);
    ring.pop(3);  // the consumer frees three: the producer's copy is now stale, too high
    CHECK(ring.size() == 1);
    CHECK(ring.size_seen() == 4);  // fails closed: a stale view only overstates the queue
    CHECK(ring.size_now() == 1);
    CHECK(ring.size_seen() == 1);
    // Refilled past the wrap, a claim on a full-looking ring reads the index again.
    for (int i = 0; i < 3; ++i) {
        Counted* c = ring.claim();
        REQUIRE(c != nullptr);
        c->value = 100 + static_cast<std::uint64_t>(i);
        ring.publish();
    }
    CHECK(ring.claim() == nullptr);
    ring.pop(2);
    CHECK(ring.size_seen() == 4);
    Counted* c = ring.claim();  // seen full, read again: two free
    REQUIRE(c != nullptr);
    CHECK(ring.size_seen() == 2);
    c->value = 200;
    ring.publish();
    REQUIRE(ring.front() != nullptr);
    CHECK(ring.front()->value == 101);
    ring.pop(1);
    REQUIRE(ring.front() != nullptr);
    CHECK(ring.front()->value == 102);
    ring.pop(1);
    REQUIRE(ring.front() != nullptr);
    CHECK(ring.front()->value == 200);  // the slot after the wrap, in order
}

TEST_CASE(
    "the SPSC ring's consumer reads the producer's index only when its copy has too few "
    "entries, and never sees a slot not published",
    "[ring]") {
    detail::SpscRing<Counted> ring(4);
    for (std::uint64_t i = 0; i < 3; ++i) {
        Counted* c = ring.claim();
        REQUIRE(c != nullptr);
        c->value = i;
        ring.publish();
    }
    // Popped on a size() read from elsewhere, past the head the consumer's copy holds.
    CHECK(ring.size() == 3);
    ring.pop(3);
    CHECK(ring.front() == nullptr);
    CHECK(ring.peek(0) == nullptr);
    CHECK(ring.available() == 0);
    for (std::uint64_t i = 3; i < 5; ++i) {
        Counted* c = ring.claim();
        REQUIRE(c != nullptr);
        c->value = i;
        ring.publish();
    }
    CHECK(ring.available() == 2);
    REQUIRE(ring.peek(1) != nullptr);
    CHECK(ring.peek(1)->value == 4);
    CHECK(ring.peek(2) == nullptr);
    Counted* c = ring.claim();  // published after the batch was sized: a later peek sees it
    REQUIRE(c != nullptr);
    c->value = 5;
    ring.publish();
    REQUIRE(ring.peek(2) != nullptr);
    CHECK(ring.peek(2)->value == 5);
    CHECK(ring.peek(3) == nullptr);
    ring.pop(3);
    CHECK(ring.empty());
    CHECK(ring.peek(0) == nullptr);
}

TEST_CASE("the SPSC ring hands 1,000,000 items from one thread to another in batches, in order",
          "[ring][threads]") {
    constexpr std::uint64_t n = 1'000'000;
    detail::SpscRing<Counted> ring(64);
    std::thread producer = produce(ring, n);
    std::uint64_t received = 0, out_of_order = 0, missing = 0;
    while (received < n) {
        const std::size_t batch = ring.available();
        if (batch == 0) {
            std::this_thread::yield();
            continue;
        }
        for (std::size_t i = 0; i < batch; ++i) {
            const Counted* c = ring.peek(i);
            if (c == nullptr) {
                ++missing;
                continue;
            }
            if (c->value != (received + i) * 7 + 1) ++out_of_order;
        }
        ring.pop(batch);
        received += batch;
    }
    producer.join();
    CHECK(missing == 0);
    CHECK(out_of_order == 0);
    CHECK(ring.empty());
    CHECK(ring.popped() == n);
}

TEST_CASE("the SPSC ring hands 1,000,000 items from one thread to another in order",
          "[ring][threads]") {
    constexpr std::uint64_t n = 1'000'000;
    detail::SpscRing<Counted> ring(64);
    std::thread producer = produce(ring, n);
    std::uint64_t received = 0, out_of_order = 0, largest = 0;
    while (received < n) {
        Counted* c = ring.front();
        if (c == nullptr) {
            std::this_thread::yield();
            continue;
        }
        if (c->value != received * 7 + 1) ++out_of_order;
        const std::size_t size = ring.size();
        if (size > largest) largest = size;
        ring.pop();
        ++received;
    }
    producer.join();
    CHECK(out_of_order == 0);
    CHECK(largest <= ring.capacity());
    CHECK(ring.empty());
    CHECK(ring.pushed() == n);
    CHECK(ring.popped() == n);
}

TEST_CASE("the desk's tick runs on each pass, with the Guard's time, at least every 100 ms",
          "[incident][desk][threads]") {
    ManualClock clock(start);
    std::mutex mutex;
    std::vector<TimeNs> ticks;
    std::vector<std::chrono::steady_clock::time_point> at;
    detail::IncidentDesk::Hooks hooks;
    hooks.audit = [](TimeNs, std::string_view, std::string) {};
    hooks.report = [](std::string_view) {};
    hooks.new_id = [](std::string_view p, TimeNs, std::uint64_t n) {
        return std::string(p) + std::to_string(n);
    };
    hooks.latest_time = [&] { return clock.now_ns() + 5; };  // the Guard's latest time
    hooks.record_automatic_halt = [](TimeNs, std::string) { return std::string(); };
    hooks.halt_for_escalation = [](TimeNs, std::string) {};
    hooks.tick = [&](TimeNs now) {
        std::lock_guard<std::mutex> lock(mutex);
        ticks.push_back(now);
        at.push_back(std::chrono::steady_clock::now());
    };

    SECTION("driven by the caller, on simulated time") {
        detail::IncidentDesk::Options o;
        o.thread = false;
        detail::IncidentDesk desk(clock, o, hooks);
        desk.start();  // no thread: only process() ticks
        std::this_thread::sleep_for(std::chrono::milliseconds(20));
        CHECK(ticks.empty());
        desk.process();
        clock.advance(std::chrono::seconds(1));
        desk.process();
        REQUIRE(ticks.size() == 2);
        CHECK(ticks[0] == start + 5);
        CHECK(ticks[1] == start + 1'000'000'000 + 5);
    }
    SECTION("on the desk's own thread") {
        detail::IncidentDesk::Options o;
        o.thread = true;
        detail::IncidentDesk desk(clock, o, hooks);
        desk.start();
        std::this_thread::sleep_for(std::chrono::milliseconds(500));
        desk.stop();
        std::lock_guard<std::mutex> lock(mutex);
        REQUIRE(ticks.size() >= 5);
        CHECK(ticks.back() == start + 5);
        auto longest = std::chrono::steady_clock::duration::zero();
        for (std::size_t i = 1; i < at.size(); ++i) longest = std::max(longest, at[i] - at[i - 1]);
        CHECK(longest < std::chrono::milliseconds(100));
    }
}
