// A simulated trading day under the seed scope. First the human steps: a CA whose key sits in a
// KMS, an agent registered by its owner, the seed scope approved and signed by a named compliance
// officer, a 24-hour certificate carrying it. Then a strategy on a manual clock sends ~1,800
// orders between 06:30 and 20:30 UTC on Monday 2024-01-08, some out of scope on purpose, and a
// desk head pulls the kill switch for a few minutes. Prints what the Guard decided, by reason.
//
//   kakunin_demo_day [STATE_DIR]     (default: a fresh temporary directory)
#include <kakunin/kakunin.hpp>
#include <kakunin/software_kms.hpp>

#include <sys/stat.h>
#include <unistd.h>

#include <cerrno>
#include <cstdlib>

#include <cstdio>
#include <map>
#include <string>
#include <vector>

using namespace kakunin;

namespace {

Scope seed_scope() {
    Scope s;
    s.max_transaction = Money{Currency::parse("EUR"), parse_decimal("500000.00")};
    s.instruments = {"BTC_EUR", "ETH_EUR", "SOL_EUR"};
    s.counterparties = {"exchange_a", "exchange_b"};
    s.trading_hours = {TradingWindow{0x1f, 7 * 60, 20 * 60}};  // Mon-Fri 07:00-20:00 UTC
    s.regions = {"eu-west-1", "eu-central-1"};
    s.limits.max_order_quantity = {{"BTC_EUR", parse_decimal("10")},
                                   {"ETH_EUR", parse_decimal("150")}};
    s.limits.price_collar_bps = 500;
    s.limits.max_orders_per_second = 50;
    s.limits.max_daily_notional = Money{Currency::parse("EUR"), parse_decimal("5000000.00")};
    validate(s);
    return s;
}

/// Deterministic pseudo-random numbers, so every run prints the same day.
struct Lcg {
    std::uint64_t state = 20240108;
    std::uint64_t next(std::uint64_t n) {
        state = state * 6364136223846793005ull + 1442695040888963407ull;
        return (state >> 33) % n;
    }
};

struct Attempt {
    const char* label;
    std::string instrument, counterparty, region;
    Decimal quantity, price, reference;
};

std::string make_state_dir(int argc, char** argv) {
    if (argc > 1) {
        if (mkdir(argv[1], 0700) != 0 && errno != EEXIST)
            throw Error(ErrorCategory::io, std::string("cannot create ") + argv[1]);
        return argv[1];
    }
    char templ[] = "/tmp/kakunin-demo-XXXXXX";
    if (mkdtemp(templ) == nullptr)
        throw Error(ErrorCategory::io, "cannot create a temporary directory");
    return templ;
}

}  // namespace

int main(int argc, char** argv) try {
    const Scope scope = seed_scope();
    ManualClock clock(utc(2024, 1, 8, 6, 0));
    const std::string state = make_state_dir(argc, argv);
    if (std::getenv(SoftwareKms::passphrase_variable) == nullptr)
        setenv(SoftwareKms::passphrase_variable, "demo passphrase, not for production", 0);

    // The human steps (DESIGN §3): CA key in the KMS, registration, signed approval, issuance.
    std::shared_ptr<Kms> kms(SoftwareKms::open(state + "/keys"));
    auto ca = LocalCa::init(kms, clock, LocalCaOptions{state});
    ca->register_agent(
        {"agent-7", "Desk 3 (J. Roe)", "BTC/ETH/SOL market making", clock.now_ns(), "J. Roe"});
    const ScopeApproval approval =
        approve_scope(*kms, "agent-7", "A. Schmidt (compliance)", scope, clock.now_ns());
    ca->record_approval(approval, scope);
    const KeyHandle agent_key = kms->find_or_create_key("agent:agent-7", KeyAlgorithm::ed25519);
    const AgentCertificate cert =
        ca->issue_for_agent("agent-7", kms->public_key(agent_key).spki_der);
    Guard guard(GuardCredentials{cert, ca->trust_anchor(), ca->current_crl(), kms, agent_key},
                clock);

    std::printf(
        "Kakunin demo: one simulated day under the seed scope (Monday 2024-01-08, UTC)\n\n");
    std::printf("state directory    %s\n", state.c_str());
    std::printf("CA                 %s\n", ca->trust_anchor().subject().c_str());
    std::printf("agent              agent-7, registered by J. Roe for BTC/ETH/SOL market making\n");
    std::printf("scope approved by  %s at %s\n", approval.approver.c_str(),
                format_timestamp(approval.approved_at).c_str());
    std::printf("scope sha256       %s\n", approval.scope_sha256.c_str());
    std::printf("certificate        serial %s, %s to %s\n", cert.serial().c_str(),
                format_timestamp(cert.not_before()).c_str(),
                format_timestamp(cert.not_after()).c_str());
    std::printf("                   %s\n\n", cert.fingerprint().c_str());
    clock.set(utc(2024, 1, 8, 6, 30));

    std::map<std::string, int> by_reason;
    std::map<std::string, int> by_verdict;
    std::vector<std::string> notable;
    Lcg rng;
    std::int64_t crl_hour = floor_div(clock.now_ns(), 3'600'000'000'000);
    const Decimal mid[3] = {parse_decimal("42000.00"), parse_decimal("2500.00"),
                            parse_decimal("95.00")};
    const char* names[3] = {"BTC_EUR", "ETH_EUR", "SOL_EUR"};

    auto send = [&](const Attempt& a) {
        Order o;
        o.instrument = a.instrument;
        o.counterparty = a.counterparty;
        o.region = a.region;
        o.quantity = a.quantity;
        o.price = a.price;
        o.reference_price = a.reference;
        o.reasoning = a.label;
        const Decision d = guard.check(o);
        ++by_verdict[to_string(d.verdict)];
        std::string reasons;
        for (ReasonCode r : d.reasons) {
            ++by_reason[to_string(r)];
            reasons += (reasons.empty() ? "" : ", ") + std::string(to_string(r));
        }
        if (a.label[0] != '\0')
            notable.push_back(format_timestamp(d.ts_ns).substr(11, 8) + "  " +
                              to_string(d.verdict) + "  " + a.label +
                              (reasons.empty() ? "" : "  [" + reasons + "]"));
        return d;
    };

    // A normal order every 30 s on average, 06:30-20:30; the Guard refuses those outside hours.
    const TimeNs end = utc(2024, 1, 8, 20, 30);
    int step = 0;
    while (clock.now_ns() < end) {
        clock.advance(std::chrono::seconds(5 + rng.next(50)));
        // CRLs live an hour: the CA publishes a fresh one and the Guard takes it.
        if (floor_div(clock.now_ns(), 3'600'000'000'000) != crl_hour) {
            crl_hour = floor_div(clock.now_ns(), 3'600'000'000'000);
            guard.update_crl(ca->current_crl());
        }
        const int i = static_cast<int>(rng.next(3));
        const Decimal qty{static_cast<std::int64_t>(1 + rng.next(200)), 3};  // 0.001 .. 0.200
        Attempt a{"",
                  names[i],
                  rng.next(2) ? "exchange_a" : "exchange_b",
                  rng.next(3) ? "eu-west-1" : "eu-central-1",
                  qty,
                  mid[i],
                  mid[i]};
        ++step;
        if (step == 3) a.label = "early start before the session opens";
        if (step == 200) {
            a.instrument = "DOGE_EUR";
            a.label = "instrument outside the scope";
        }
        if (step == 300) {
            a.counterparty = "exchange_x";
            a.label = "unapproved venue";
        }
        if (step == 400) {
            a.region = "us-east-1";
            a.label = "signed from an unapproved region";
        }
        if (step == 500) {
            a.instrument = "BTC_EUR";
            a.quantity = parse_decimal("12");
            a.price = mid[0];
            a.reference = mid[0];
            a.label = "12 BTC: above the 10 BTC order limit and EUR 500k per order";
        }
        if (step == 600) {
            a.price = Decimal{mid[i].units * 106 / 100, 2};
            a.label = "price 6% above reference (collar 5%)";
        }
        if (step == 700) {
            a.instrument = "BTC_USD";
            a.label = "quoted in USD";
        }
        send(a);
        if (step == 800) {  // a runaway loop: 80 orders within one second
            for (int k = 0; k < 80; ++k) {
                Attempt burst{k == 79 ? "burst: 80th order within one second" : "",
                              "SOL_EUR",
                              "exchange_a",
                              "eu-west-1",
                              Decimal{1, 0},
                              mid[2],
                              mid[2]};
                clock.advance(std::chrono::milliseconds(10));
                send(burst);
            }
        }
        if (step == 900) {
            guard.halt("desk kill switch: venue incident", "M. Rossi (desk head)");
            notable.push_back(format_timestamp(clock.now_ns()).substr(11, 8) +
                              "  HALT by M. Rossi (desk head): venue incident");
            clock.advance(std::chrono::seconds(20));
            Attempt a2{"order while halted", "ETH_EUR", "exchange_a", "eu-west-1",
                       Decimal{1, 0},        mid[1],    mid[1]};
            send(a2);
            clock.advance(std::chrono::minutes(5));
            guard.resume("A. Schmidt (compliance)");
            notable.push_back(format_timestamp(clock.now_ns()).substr(11, 8) +
                              "  RESUME by A. Schmidt (compliance)");
        }
        if (step == 1000) {  // large orders late in the day run into the daily notional limit
            bool reported = false;
            for (int k = 0; k < 12; ++k) {
                clock.advance(std::chrono::seconds(2));
                Attempt big{"",     "BTC_EUR", "exchange_b", "eu-west-1", parse_decimal("10"),
                            mid[0], mid[0]};
                const Decision d = send(big);
                if (!d.allowed() && !reported) {
                    reported = true;
                    notable.push_back(format_timestamp(d.ts_ns).substr(11, 8) +
                                      "  reject  EUR 420k order #" + std::to_string(k + 1) +
                                      " of a series crosses EUR 5m for the day  [" +
                                      to_string(*d.reasons.begin()) + "]");
                }
            }
        }
    }

    std::printf(
        "scope: EUR 500,000 per order; BTC_EUR ETH_EUR SOL_EUR; exchange_a exchange_b;\n"
        "       Mon-Fri 07:00-20:00; eu-west-1 eu-central-1; RTS 6 limits on\n\n");
    std::printf("Notable moments\n");
    for (const auto& n : notable) std::printf("  %s\n", n.c_str());
    const GuardCounters c = guard.counters();
    std::printf("\nDecisions: %llu orders checked, %llu allowed, %llu rejected\n\n",
                static_cast<unsigned long long>(c.checks),
                static_cast<unsigned long long>(c.allowed),
                static_cast<unsigned long long>(c.rejected));
    std::printf("  %-30s %s\n", "rejection reason", "orders");
    std::printf("  %-30s %s\n", "------------------------------", "------");
    for (const auto& [reason, count] : by_reason)
        std::printf("  %-30s %6d\n", reason.c_str(), count);
    return 0;
} catch (const std::exception& e) {
    std::fprintf(stderr, "demo failed: %s\n", e.what());
    return 1;
}
