// Behaviour monitoring end to end, on simulated time, on a state directory made by the kakunin
// command line (ca init, agent register, scope approve):
//   1. 14 days of observation: the agent trades under its certificate (renewed every day), the
//      Guard records every decision and learns what is normal;
//   2. a named compliance officer approves the learned baseline (signed, stored, recorded);
//   3. normal trading with scoring on;
//   4. an order from a region the agent never used: warning, incident, acknowledged, resolved;
//   5. a large order in an instrument it never traded: rejected, the Guard halts in the same
//      call, the CA revokes the certificate, compliance is told, a replacement is requested;
//   6. the officer signs the post-incident review; the incident timeline is printed.
// The simulated days start at the next midnight UTC after now, so every certificate is issued
// inside the CA's validity.
//
//   KAKUNIN_KMS_PASSPHRASE=... kakunin_demo_behaviour STATE AGENT OFFICER
#include <kakunin/baseline.hpp>
#include <kakunin/ca.hpp>
#include <kakunin/guard.hpp>
#include <kakunin/incident.hpp>
#include <kakunin/notifier.hpp>
#include <kakunin/replay.hpp>
#include <kakunin/software_kms.hpp>

#include <cstdio>
#include <iostream>
#include <map>
#include <nlohmann/json.hpp>
#include <string>

using namespace kakunin;

namespace {

constexpr TimeNs second = 1'000'000'000LL;
constexpr TimeNs hour = 3600 * second;
constexpr TimeNs day = 24 * hour;

/// A small deterministic generator: the same run every time.
struct Lcg {
    std::uint64_t s = 0x9e3779b97f4a7c15ULL;
    std::uint64_t next() {
        s = s * 6364136223846793005ULL + 1442695040888963407ULL;
        return s >> 33;
    }
    std::uint64_t below(std::uint64_t n) { return next() % n; }
};

struct Tally {
    std::map<std::string, int> count;
    void add(const Decision& d) {
        ++count[to_string(d.verdict)];
        for (ReasonCode r : d.reasons) ++count[std::string("  ") + to_string(r)];
    }
    void print(const char* title) const {
        std::printf("%s\n", title);
        for (const auto& [k, v] : count) std::printf("  %-32s %d\n", k.c_str(), v);
    }
};

std::string score(std::uint32_t ppm) {
    char b[16];
    std::snprintf(b, sizeof b, "%.2f", ppm / 1e6);
    return b;
}

void print_decision(const char* what, const Decision& d) {
    std::printf("%s\n  -> %s, score %s (", what, to_string(d.verdict), score(d.score_ppm).c_str());
    for (std::size_t i = 0; i < score_component_count; ++i)
        std::printf("%s%s %s", i ? ", " : "", component_name(i),
                    score(d.components_ppm[i]).c_str());
    std::printf(")");
    for (ReasonCode r : d.reasons) std::printf(" [%s]", to_string(r));
    std::printf("\n");
}

}  // namespace

int main(int argc, char** argv) {
    if (argc != 4) {
        std::fprintf(stderr, "usage: %s STATE AGENT OFFICER\n", argv[0]);
        return 2;
    }
    const std::string state = argv[1], agent = argv[2], officer = argv[3];
    try {
        std::shared_ptr<Kms> kms(SoftwareKms::open(state + "/keys"));
        SystemClock wall;
        ManualClock clock(floor_div(wall.now_ns(), day) * day + day);
        LocalCaOptions ca_options;
        ca_options.state_dir = state;
        ca_options.crl_validity = std::chrono::hours(26);  // a fresh CRL every simulated day
        std::shared_ptr<LocalCa> ca = LocalCa::open(kms, clock, ca_options);
        const KeyHandle agent_key =
            kms->find_or_create_key("agent:" + agent, KeyAlgorithm::ed25519);
        const auto public_key = kms->public_key(agent_key).spki_der;

        GuardOptions options;
        auto sink = std::make_shared<FileAuditSink>(state + "/audit/" + agent + ".jsonl");
        options.audit = AuditTrailOptions{sink};
        options.authority = ca;
        options.notifier = std::make_shared<LoggingNotifier>(std::cout);
        options.incident_thread = false;  // simulated time: incidents advance with the orders
        options.on_replacement_request = [](const ReplacementRequest& r) {
            std::printf("  replacement requested for %s (revoked serial %s)\n", r.agent_id.c_str(),
                        r.revoked_serial.c_str());
        };
        Guard guard(GuardCredentials{ca->issue_for_agent(agent, public_key), ca->trust_anchor(),
                                     ca->issue_crl(), kms, agent_key},
                    clock, options);
        const Scope scope = guard.scope();

        Lcg rng;
        std::uint64_t n = 0;
        // Certificates live 24 h: renew and take a fresh CRL at 06:00 every day.
        auto renew = [&](TimeNs midnight) {
            clock.set(midnight + 6 * hour);
            guard.rotate(ca->issue_for_agent(agent, public_key));
            guard.update_crl(ca->issue_crl());
        };
        auto weekday = [](TimeNs t) { return minute_of_week(t) / 1440 < 5; };
        // The agent's habits: every 2-4 minutes, 07:00-20:00 UTC on weekdays, 70 % BTC_EUR, 30 %
        // ETH_EUR, all signed in eu-west-1.
        auto trade = [&](TimeNs from, TimeNs to, Tally& tally) {
            for (TimeNs t = from; t < to;
                 t += (120 + static_cast<TimeNs>(rng.below(121))) * second) {
                clock.set(t);
                const bool btc = rng.below(10) < 7;
                const std::string q =
                    btc ? "0." + std::to_string(5 + rng.below(45))
                        : std::to_string(1 + rng.below(8)) + "." + std::to_string(rng.below(10));
                const std::string p = btc ? std::to_string(39800 + rng.below(400)) + ".00"
                                          : std::to_string(2480 + rng.below(40)) + ".00";
                const std::string id = "o-" + std::to_string(++n);
                Order o;
                o.client_order_id = id;
                o.instrument = btc ? "BTC_EUR" : "ETH_EUR";
                o.counterparty = rng.below(2) ? "exchange_a" : "exchange_b";
                o.side = rng.below(2) ? Side::buy : Side::sell;
                o.quantity = parse_decimal(q);
                o.price = parse_decimal(p);
                o.reference_price = o.price;
                o.region = "eu-west-1";
                o.reasoning = "quote refresh";
                tally.add(guard.check(o));
                guard.process_incidents();
            }
        };
        auto trade_day = [&](TimeNs midnight, Tally& tally) {
            renew(midnight);
            if (weekday(midnight)) trade(midnight + 7 * hour, midnight + 20 * hour, tally);
        };

        const TimeNs start = clock.now_ns();
        std::printf("== 1. observation: 14 days from %s\n", format_timestamp(start).c_str());
        Tally observed;
        for (int d = 0; d < 14; ++d) trade_day(start + d * day, observed);
        observed.print("decisions while observing:");

        std::printf("\n== 2. %s approves the learned baseline\n", officer.c_str());
        clock.set(start + 14 * day);
        const Baseline baseline = guard.observation()->finalize(clock.now_ns());
        FileBaselineStore store(state);
        const StoredBaseline stored = store.put_baseline(agent, to_json(baseline));
        const BaselineApproval approval =
            approve_baseline(*kms, baseline, officer, clock.now_ns(), stored.version);
        store.put_approval(approval);
        nlohmann::json record = nlohmann::json::parse(to_json(approval));
        record["observed_from_ns"] = baseline.observed_from_ns;
        record["observed_to_ns"] = baseline.observed_to_ns;
        record["orders"] = baseline.orders;
        ca->record_event("baseline.approved", record.dump());
        guard.enforce_baseline({baseline, approval});
        std::printf(
            "  %llu orders, notional p50 %s / p99 %s EUR, %llu.%03llu orders/h on average\n"
            "  baseline v%llu sha256 %s\n",
            static_cast<unsigned long long>(baseline.orders), baseline.notional_p50.c_str(),
            baseline.notional_p99.c_str(),
            static_cast<unsigned long long>(baseline.hourly_mean_milli / 1000),
            static_cast<unsigned long long>(baseline.hourly_mean_milli % 1000),
            static_cast<unsigned long long>(stored.version), approval.baseline_sha256.c_str());

        std::printf("\n== 3. two days of normal trading, scored\n");
        Tally normal;
        for (int d = 14; d < 16; ++d) trade_day(start + d * day, normal);
        normal.print("decisions:");

        // The next weekday: one anomaly that warns, one that revokes.
        int d3 = 16;
        Tally quiet;
        while (!weekday(start + d3 * day)) trade_day(start + d3++ * day, quiet);
        const TimeNs day3 = start + d3 * day;
        renew(day3);
        Tally morning;
        trade(day3 + 7 * hour, day3 + 10 * hour, morning);
        std::printf("\n== 4. an order from a region this agent never used\n");
        clock.set(day3 + 10 * hour);
        Order odd;
        odd.client_order_id = "o-odd";
        odd.instrument = "BTC_EUR";
        odd.counterparty = "exchange_a";
        odd.quantity = parse_decimal("0.2");
        odd.price = parse_decimal("40000.00");
        odd.reference_price = odd.price;
        odd.region = "eu-central-1";
        odd.reasoning = "failover to the Frankfurt signer";
        print_decision("  BTC_EUR 0.2 @ 40000 from eu-central-1", guard.check(odd));
        guard.process_incidents();
        const std::string warned = guard.incidents().back().id;
        clock.advance(std::chrono::minutes(3));
        guard.acknowledge_incident(warned, "M. Weber (on call)", "Frankfurt failover was planned");
        guard.resolve_incident(warned, "M. Weber (on call)", "expected: planned failover test");

        trade(day3 + 10 * hour + 5 * 60 * second, day3 + 11 * hour, morning);
        std::printf("\n== 5. a large order in an instrument it never traded\n");
        clock.set(day3 + 11 * hour);
        Order big = odd;
        big.client_order_id = "o-big";
        big.instrument = "SOL_EUR";
        big.quantity = parse_decimal("1500");
        big.price = parse_decimal("150.00");
        big.reference_price = big.price;
        big.region = "eu-west-1";
        big.reasoning = "news says SOL will 10x, all in";
        print_decision("  SOL_EUR 1500 @ 150.00", guard.check(big));
        guard.process_incidents();
        Order after = odd;
        after.region = "eu-west-1";
        clock.advance(std::chrono::seconds(1));
        print_decision("  the next ordinary order", guard.check(after));
        std::printf("  guard halted: %s, certificate revoked by the CA: %s\n",
                    guard.halted() ? "yes" : "no",
                    ca->is_revoked(guard.certificate()->serial()) ? "yes" : "no");

        std::printf("\n== 6. post-incident review\n");
        clock.advance(std::chrono::hours(2));
        const std::string revoked = guard.incidents().back().id;
        const IncidentReview review =
            sign_incident_review(*kms, agent, revoked, officer,
                                 "the agent acted on an unverified news item; its prompt now "
                                 "excludes unverified sources",
                                 clock.now_ns());
        guard.review_incident(review);
        ca->record_event("review.signed", to_json(review));

        std::printf("\nincident timeline\n");
        for (const Incident& i : guard.incidents()) {
            std::printf("  %s  score %s  (%s)\n", i.id.c_str(), score(i.score_ppm).c_str(),
                        to_string(i.state));
            for (const IncidentTransition& t : i.history)
                std::printf("    %s  %-12s %s: %s\n", format_timestamp(t.at_ns).c_str(),
                            to_string(t.state), t.by.c_str(), t.note.c_str());
        }
        std::printf("\naudit log %s/audit/%s.jsonl, baseline %s/baselines/%s/%llu.json\n",
                    state.c_str(), agent.c_str(), state.c_str(), agent.c_str(),
                    static_cast<unsigned long long>(stored.version));
    } catch (const std::exception& e) {
        std::fprintf(stderr, "demo: %s\n", e.what());
        return 1;
    }
    return 0;
}
