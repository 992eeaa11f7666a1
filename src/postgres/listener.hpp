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
#include <condition_variable>
#include <cstdint>
#include <functional>
#include <memory>
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

/// A feed's channel on a Listener, the feed's own (standalone) or its runtime's, and whether it
/// listens. Every PostgreSQL feed holds one.
class FeedChannel {
public:
    /// The listener of a standalone feed, from the feed's options (reconnect_delay, io_timeout,
    /// check_interval, error_handler).
    template <class FeedOptions>
    static std::unique_ptr<Listener> own(std::string conninfo, const char* application_name,
                                         const FeedOptions& o) {
        return std::make_unique<Listener>(
            std::move(conninfo), application_name,
            ListenerOptions{o.reconnect_delay, o.io_timeout, o.check_interval, o.error_handler});
    }

    FeedChannel() = default;
    ~FeedChannel() { close(); }
    FeedChannel(const FeedChannel&) = delete;
    FeedChannel& operator=(const FeedChannel&) = delete;

    /// Adds `channel` on `listener` (its `listening` callback is replaced by this handle's),
    /// keeping `own` when the listener is the feed's own.
    void open(Listener& listener, Listener::Channel channel, std::unique_ptr<Listener> own = {}) {
        m_own = std::move(own);
        m_listener = &listener;
        channel.listening = [this](bool on) {
            std::lock_guard<std::mutex> lock(m_mutex);
            m_listening = on;
            m_changed.notify_all();
        };
        m_id = listener.add(std::move(channel));
    }
    /// After this returns no callback of the channel runs (and the feed's own listener stopped).
    void close() noexcept {
        if (m_listener) m_listener->remove(m_id);
        m_listener = nullptr;
        m_own.reset();
    }
    /// Waits until the channel has caught up on a live connection; false on timeout.
    bool wait_until_listening(std::chrono::milliseconds timeout) {
        std::unique_lock<std::mutex> lock(m_mutex);
        return m_changed.wait_for(lock, timeout, [this] { return m_listening; });
    }
    std::uint64_t connections() const noexcept {
        return m_listener ? m_listener->connections() : 0;
    }

private:
    std::unique_ptr<Listener> m_own;
    Listener* m_listener = nullptr;
    int m_id = 0;
    std::mutex m_mutex;
    std::condition_variable m_changed;
    bool m_listening = false;
};

}  // namespace kakunin::pg
