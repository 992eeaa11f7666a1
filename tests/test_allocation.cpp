// check() allocates nothing in steady state, on the real path: a Guard on a certificate with
// the audit trail on. operator new is replaced in this test program and counts, per thread, the
// allocations of the thread calling check() (the audit writer thread allocates on its own).
#include <catch2/catch.hpp>

#include <cstdlib>
#include <new>

#include "kakunin/testing.hpp"
#include "support.hpp"

namespace {
thread_local std::uint64_t t_allocations = 0;
}

void* operator new(std::size_t n) {
    ++t_allocations;
    if (void* p = std::malloc(n ? n : 1)) return p;
    throw std::bad_alloc();
}
void* operator new[](std::size_t n) {
    ++t_allocations;
    if (void* p = std::malloc(n ? n : 1)) return p;
    throw std::bad_alloc();
}
void* operator new(std::size_t n, const std::nothrow_t&) noexcept {
    ++t_allocations;
    return std::malloc(n ? n : 1);
}
void* operator new[](std::size_t n, const std::nothrow_t&) noexcept {
    ++t_allocations;
    return std::malloc(n ? n : 1);
}
void operator delete(void* p) noexcept { std::free(p); }
void operator delete[](void* p) noexcept { std::free(p); }
void operator delete(void* p, std::size_t) noexcept { std::free(p); }
void operator delete[](void* p, std::size_t) noexcept { std::free(p); }

using namespace kakunin;

TEST_CASE("check() on a certificate with the audit trail on allocates nothing") {
    TestAuthority authority;
    auto sink = std::make_shared<MemoryAuditSink>();
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
