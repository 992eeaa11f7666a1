// check() allocates nothing in steady state, on the real path: a Guard on a certificate with
// the audit trail on. operator new is replaced in this test program and counts, per thread, the
// allocations of the thread calling check() (the audit writer thread allocates on its own).
#include <catch2/catch.hpp>

#include <cstdlib>
#include <filesystem>
#include <new>

#include "kakunin/testing.hpp"
#include "support.hpp"
#include "temp_dir.hpp"

#include "allocation_counter.hpp"

using namespace kakunin;

namespace {

void check_allocates_nothing(std::shared_ptr<AuditSink> sink) {
    TestAuthority authority;
    GuardOptions options;
    options.audit = AuditTrailOptions{sink};
    options.audit->queue_capacity = 8192;
    options.audit->record_signatures = false;
    Scope scope = parse_scope_json(test::seed_scope_json);
    Guard guard(authority.credentials_for(scope), authority.clock(), options);
    Order allowed = test::good_order();
    allowed.quantity = Decimal{1, 3};  // 0.001 BTC: far inside the daily notional
    allowed.reasoning = "a rationale long enough to need a heap string if it were copied into one";
    Order rejected = allowed;
    rejected.counterparty = "exchange_z";
    for (int i = 0; i < 100; ++i) guard.check(allowed);  // warm
    REQUIRE(guard.audit()->wait_durable(std::chrono::seconds(10)));
    authority.clock().advance(std::chrono::seconds(2));  // the warm-up's burst leaves the window

    const std::uint64_t before = t_allocations;
    int allowed_count = 0;
    for (int i = 0; i < 2000; ++i) {
        authority.clock().advance(std::chrono::milliseconds(50));  // under 50 orders/s
        allowed_count += guard.check(i % 2 ? rejected : allowed).allowed();
    }
    const std::uint64_t during = t_allocations - before;
    CHECK(during == 0);
    CHECK(allowed_count == 1000);
    REQUIRE(guard.audit()->wait_durable(std::chrono::seconds(10)));
    CHECK(guard.audit()->counters().durable == 2100);
}

}  // namespace

TEST_CASE("check() on a certificate with the audit trail on allocates nothing") {
    check_allocates_nothing(std::make_shared<MemoryAuditSink>());
}

TEST_CASE("check() with the audit trail's write-ahead journal (a file log) allocates nothing") {
    test::TempDir dir("kakunin-allocation");
    const std::string log = dir / "agent.jsonl";
    check_allocates_nothing(std::make_shared<FileAuditSink>(log));
    CHECK(std::filesystem::file_size(log + ".journal") > 8192 * sizeof(detail::JournalSlot));
}

TEST_CASE(
    "amend(), cancel() and on_execution() with every lifecycle limit and the audit trail "
    "on allocate nothing") {
    TestAuthority authority;
    auto sink = std::make_shared<MemoryAuditSink>();
    GuardOptions options;
    options.audit = AuditTrailOptions{sink};
    options.audit->queue_capacity = 16384;
    options.audit->record_signatures = false;
    options.on_cancel_all = [](const CancelAll&) {};
    options.heartbeat_timeout = std::chrono::hours(1);
    Scope scope = parse_scope_json(test::seed_scope_json);
    scope.limits.max_orders_per_second.reset();
    scope.limits.max_position = {{"BTC_EUR", {parse_decimal("1000"), parse_decimal("1000")}}};
    scope.limits.max_open_orders = 64;
    scope.limits.max_working_notional = Money{Currency::parse("EUR"), parse_decimal("10000000")};
    scope.limits.max_messages_per_second = 1000;
    scope.limits.max_daily_loss = Money{Currency::parse("EUR"), parse_decimal("1000000")};
    Guard guard(authority.credentials_for(scope), authority.clock(), options);
    std::vector<std::string> ids;
    for (int i = 0; i < 400; ++i) ids.push_back("mm-" + std::to_string(i));
    Order o = test::good_order();
    o.quantity = Decimal{1, 2};
    auto cycle = [&](int i) {  // quote, amend, two acks, partial fill, cancel, confirmed
        o.client_order_id = ids[static_cast<std::size_t>(i)];
        o.side = i % 2 ? Side::sell : Side::buy;
        o.price = Decimal{4000000 + (i % 2 ? 500 : -500), 2};
        o.reference_price = o.price;
        int allowed = guard.check(o).allowed();
        allowed += guard.amend(Amend{o.client_order_id, Decimal{2, 2}, std::nullopt}).allowed();
        ExecutionReport e;
        e.client_order_id = o.client_order_id;
        guard.on_execution(e);  // ack of the new order
        guard.on_execution(e);  // ack of the amend
        e.type = ExecutionType::fill;
        e.quantity = Decimal{1, 2};
        e.price = o.price;
        guard.on_execution(e);
        allowed += guard.cancel(Cancel{o.client_order_id}).allowed();
        e.type = ExecutionType::cancelled;
        guard.on_execution(e);
        guard.heartbeat();
        return allowed;
    };
    for (int i = 0; i < 100; ++i) cycle(i);  // warm
    REQUIRE(guard.audit()->wait_durable(std::chrono::seconds(10)));
    authority.clock().advance(std::chrono::seconds(2));

    const std::uint64_t before = t_allocations;
    int allowed = 0;
    for (int i = 100; i < 400; ++i) {
        authority.clock().advance(std::chrono::milliseconds(10));
        allowed += cycle(i);
    }
    const std::uint64_t during = t_allocations - before;
    CHECK(during == 0);
    CHECK(allowed == 900);  // every new order, amend and cancel of the 300 cycles
    REQUIRE(guard.audit()->wait_durable(std::chrono::seconds(10)));
    CHECK(guard.audit()->counters().durable == 400u * 7);  // heartbeats are not recorded
    CHECK(guard.working_orders().empty());
}
