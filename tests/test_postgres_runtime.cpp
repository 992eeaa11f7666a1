// PostgresRuntime (docs/operations.md): the Guards of one process share one LISTEN connection
// for every feed and one write connection, whatever their number; a lost LISTEN connection is
// reopened and every feed on it catches up.
#include <catch2/catch.hpp>

#include <chrono>
#include <memory>
#include <thread>
#include <vector>

#include "kakunin/guard.hpp"
#include "kakunin/postgres.hpp"
#include "kakunin/postgres_runtime.hpp"
#include "kakunin/testing.hpp"
#include "pg_test_support.hpp"
#include "support.hpp"

using namespace kakunin;
using namespace std::chrono_literals;

namespace {

const Scope& seed() {
    static const Scope s = parse_scope_json(test::seed_scope_json);
    return s;
}

std::string connections_named(test::PgSession& su, const std::string& prefix) {
    return su.value(
        "SELECT count(*) FROM pg_stat_activity WHERE datname = current_database() AND "
        "application_name LIKE $1",
        {prefix + "%"});
}

template <class F>
bool within(std::chrono::milliseconds limit, F&& done) {
    const auto until = std::chrono::steady_clock::now() + limit;
    while (!done()) {
        if (std::chrono::steady_clock::now() > until) return false;
        std::this_thread::sleep_for(5ms);
    }
    return true;
}

}  // namespace

TEST_CASE("postgres runtime: twenty Guards share one LISTEN connection for both feeds") {
    test::AuditTestDb db(test::shared_pg_conninfo());
    test::PgSession su(db.superuser());
    TestAuthority authority;
    PostgresRuntimeOptions options;
    options.application_name = "kk-runtime-test";
    options.reconnect_delay = 20ms;
    PostgresRuntime runtime(db.app(), options);
    auto revocations = runtime.revocation_feed();
    auto steps = runtime.human_step_feed();
    CHECK(runtime.revocation_feed() == revocations);  // the process's one
    REQUIRE(revocations->wait_until_listening(10s));
    REQUIRE(steps->wait_until_listening(10s));

    std::vector<std::unique_ptr<Guard>> guards;
    for (int i = 0; i < 20; ++i) {
        GuardCredentials c = authority.credentials_for(seed());
        c.revocation_feed = revocations;
        GuardOptions o;
        o.human_steps = steps;
        guards.push_back(std::make_unique<Guard>(std::move(c), authority.clock(), std::move(o)));
    }
    CHECK(connections_named(su, "kk-runtime-test") == "1");
    CHECK(connections_named(su, "kk-runtime-test-listen") == "1");
    CHECK(runtime.listen_connections() == 1);

    // A revocation reaches the one Guard it names, through the shared connection.
    Guard& target = *guards[7];
    publish_revocation(
        db.app(), {target.certificate()->serial(), target.certificate()->agent_id(), "test", 1});
    CHECK(within(5s, [&] { return target.halted(); }));
    for (std::size_t i = 0; i < guards.size(); ++i) {
        if (i != 7) CHECK(guards[i]->check(test::good_order()).allowed());
    }

    // Cut the connection: both feeds are back on a new one, and what was published while it
    // was down arrives by the catch-up.
    CHECK(su.value("SELECT count(pg_terminate_backend(pid)) FROM pg_stat_activity WHERE "
                   "datname = current_database() AND application_name = "
                   "'kk-runtime-test-listen'") == "1");
    Guard& second = *guards[3];
    publish_revocation(db.app(), {second.certificate()->serial(), second.certificate()->agent_id(),
                                  "after the cut", 2});
    CHECK(within(5s, [&] { return second.halted(); }));
    CHECK(within(5s, [&] { return runtime.listen_connections() == 2; }));
    CHECK(within(5s, [&] { return steps->wait_until_listening(0ms); }));
    CHECK(connections_named(su, "kk-runtime-test") == "1");
    CHECK(revocations->connections() == runtime.listen_connections());
}

TEST_CASE("postgres runtime: a runtime with no server keeps trying and its feeds say so") {
    std::vector<std::string> errors;
    std::mutex m;
    PostgresRuntimeOptions options;
    options.reconnect_delay = 10ms;
    options.error_handler = [&](std::string_view e) {
        std::lock_guard<std::mutex> lock(m);
        errors.emplace_back(e);
    };
    {
        PostgresRuntime runtime("host=/nonexistent-kakunin-socket-dir port=1 connect_timeout=1",
                                options);
        auto feed = runtime.revocation_feed();
        CHECK_FALSE(feed->wait_until_listening(200ms));
        CHECK(within(5s, [&] {
            std::lock_guard<std::mutex> lock(m);
            return !errors.empty();
        }));
    }
    std::lock_guard<std::mutex> lock(m);
    CHECK_THAT(errors.front(),
               Catch::Contains("kakunin-listen") && Catch::Contains("reconnecting"));
}
