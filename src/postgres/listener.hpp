// Private to src/postgres: one LISTEN connection shared by every feed of a process.
//
// A feed (revocations, human steps, fleet control, credentials) is a channel: a name to
// LISTEN on, what to do with a notification's payload, and a catch-up query that reads what
// committed since the feed's previous catch-up. The listener owns the connection and its
// thread; on every (re)connect it LISTENs on each channel and runs its catch-up before telling
// it that it is listening, so nothing committed while the connection was down is missed.
#pragma once

#include <atomic>
#include <chrono>
#include <cstdint>
#include <functional>
#include <mutex>
#include <string>
#include <string_view>
#include <thread>
#include <vector>

#include "postgres/pg.hpp"

namespace kakunin::pg {

struct ListenerOptions {
    /// Wait between reconnect attempts.
    std::chrono::milliseconds reconnect_delay{200};
    /// The longest wait for the server at a time (connecting: at least 2 s).
    std::chrono::milliseconds io_timeout{10000};
    /// How often every channel catches up even when nothing was notified (a backend that
    /// stopped answering sends nothing: only a query with a deadline finds it out). Zero: never.
    std::chrono::milliseconds check_interval{5000};
    /// Told about connection failures ("<what>: <error>; reconnecting"). Must not throw.
    std::function<void(std::string_view)> error_handler = {};
};

class Listener {
public:
    struct Channel {
        std::string name;  ///< a plain lowercase identifier (the NOTIFY channel)
        /// A notification's payload; true: a catch-up is due.
        std::function<bool(const char* payload)> notified;
        /// Reads what committed since the previous catch-up (throws DbError on failure).
        std::function<void(Connection&)> catch_up;
        /// true after each (re)connect's first catch-up; false when the connection is lost.
        std::function<void(bool listening)> listening = {};
    };

    /// Starts the thread, which connects (and reconnects) as `application_name`.
    Listener(std::string conninfo, std::string application_name, ListenerOptions options = {});
    ~Listener();
    Listener(const Listener&) = delete;
    Listener& operator=(const Listener&) = delete;

    /// Adds a channel; the thread LISTENs on it and catches it up at its next turn. Returns
    /// the id remove() takes. Callbacks run on the listener's thread, one at a time, and must
    /// not call add() or remove().
    int add(Channel channel);
    /// After this returns no callback of the channel runs.
    void remove(int id) noexcept;
    /// How many times the thread has connected.
    std::uint64_t connections() const noexcept { return m_connections.load(); }

private:
    struct Entry {
        int id;
        Channel channel;
        bool listened = false;  ///< LISTENed and caught up on the current connection
    };

    void run();
    void session();
    void wake() noexcept;
    void report(const std::string& message) noexcept;
    /// Under m_mutex: the channels not yet listened on this connection, LISTENed and caught up.
    void listen_new(Connection& c);
    void set_all_listening(bool on) noexcept;

    std::string m_conninfo;
    std::string m_application_name;
    ListenerOptions m_options;

    std::mutex m_mutex;  ///< m_entries; held while any callback runs
    std::vector<Entry> m_entries;
    int m_next_id = 1;
    std::atomic<bool> m_pending{false};  ///< a channel was added since the thread last looked

    std::atomic<std::uint64_t> m_connections{0};
    std::atomic<bool> m_stop{false};
    int m_wake[2] = {-1, -1};
    std::thread m_thread;
};

}  // namespace kakunin::pg
