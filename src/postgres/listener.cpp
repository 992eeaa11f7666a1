// One LISTEN connection for every feed of a process (listener.hpp).
#include "postgres/listener.hpp"

#include <fcntl.h>
#include <poll.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>

namespace kakunin::pg {

Listener::Listener(std::string conninfo, std::string application_name, ListenerOptions options)
    : m_conninfo(std::move(conninfo)),
      m_application_name(std::move(application_name)),
      m_options(std::move(options)) {
    if (::pipe2(m_wake, O_CLOEXEC | O_NONBLOCK) != 0)
        throw Error(ErrorCategory::io, "postgres listener: cannot create its wake-up pipe");
    m_thread = std::thread([this] { run(); });
}

Listener::~Listener() {
    m_stop.store(true);
    wake();
    if (m_thread.joinable()) m_thread.join();
    ::close(m_wake[0]);
    ::close(m_wake[1]);
}

int Listener::add(Channel channel) {
    if (!is_plain_identifier(channel.name))
        throw Error(ErrorCategory::invalid_input,
                    "postgres listener: channel \"" + channel.name + "\" is not a plain name");
    int id;
    {
        std::lock_guard<std::mutex> lock(m_mutex);
        id = m_next_id++;
        m_entries.push_back({id, std::move(channel), false});
        m_pending.store(true);
    }
    wake();
    return id;
}

void Listener::remove(int id) noexcept {
    std::lock_guard<std::mutex> lock(m_mutex);
    m_entries.erase(std::remove_if(m_entries.begin(), m_entries.end(),
                                   [id](const Entry& e) { return e.id == id; }),
                    m_entries.end());
}

void Listener::wake() noexcept {
    const char byte = 1;
    (void)!::write(m_wake[1], &byte, 1);
}

void Listener::report(const std::string& message) noexcept {
    if (!m_options.error_handler) return;
    try {
        m_options.error_handler(message);
    } catch (...) {
        // The handler must not throw; the listener keeps running regardless.
    }
}

void Listener::set_all_listening(bool on) noexcept {
    std::lock_guard<std::mutex> lock(m_mutex);
    for (Entry& e : m_entries) {
        if (!on) e.listened = false;
        if (e.channel.listening) e.channel.listening(on);
    }
}

void Listener::listen_new(Connection& c) {
    m_pending.store(false);
    for (Entry& e : m_entries) {
        if (e.listened) continue;
        // LISTEN first: what commits from here on is notified; what committed before is
        // visible to the catch-up.
        c.command("LISTEN " + c.quote_identifier(e.channel.name));
        e.channel.catch_up(c);
        e.listened = true;
        if (e.channel.listening) e.channel.listening(true);
    }
}

void Listener::session() {
    Connection c(m_conninfo, m_application_name.c_str(), m_options.io_timeout);
    m_connections.fetch_add(1);
    {
        std::lock_guard<std::mutex> lock(m_mutex);
        for (Entry& e : m_entries) e.listened = false;
        listen_new(c);
    }
    PGconn* raw = c.get();
    const auto interval = m_options.check_interval;
    const bool checking = interval.count() > 0;
    auto next_check = std::chrono::steady_clock::now() + interval;
    while (!m_stop.load()) {
        {
            std::lock_guard<std::mutex> lock(m_mutex);
            if (m_pending.load()) listen_new(c);
            // Notifications first: a catch-up's round trip may have read some into libpq's
            // queue, and the socket would not wake the poll for them.
            std::vector<Entry*> due;
            while (PGnotify* note = PQnotifies(raw)) {
                for (Entry& e : m_entries) {
                    if (!e.listened || e.channel.name != note->relname) continue;
                    if (e.channel.notified(note->extra) &&
                        std::find(due.begin(), due.end(), &e) == due.end())
                        due.push_back(&e);
                }
                PQfreemem(note);
            }
            const bool all = checking && std::chrono::steady_clock::now() >= next_check;
            if (all) {
                for (Entry& e : m_entries)
                    if (e.listened) e.channel.catch_up(c);
                next_check = std::chrono::steady_clock::now() + interval;
            } else {
                for (Entry* e : due) e->channel.catch_up(c);
            }
            if (all || !due.empty()) continue;
        }
        int wait_ms = 1000;
        if (checking) {
            const auto left = std::chrono::duration_cast<std::chrono::milliseconds>(
                next_check - std::chrono::steady_clock::now());
            wait_ms = static_cast<int>(std::clamp<long long>(left.count() + 1, 0, 1000));
        }
        pollfd fds[2] = {{PQsocket(raw), POLLIN, 0}, {m_wake[0], POLLIN, 0}};
        const int n = ::poll(fds, 2, wait_ms);
        if (n < 0 && errno != EINTR) c.fail(nullptr, "poll");
        if (fds[1].revents & POLLIN) {
            char buf[64];
            while (::read(m_wake[0], buf, sizeof buf) > 0) {
            }
        }
        if (m_stop.load()) break;
        if (!PQconsumeInput(raw)) c.fail(nullptr, "LISTEN connection");
    }
}

void Listener::run() {
    while (!m_stop.load()) {
        try {
            session();
        } catch (const std::exception& e) {
            set_all_listening(false);
            report(m_application_name + ": " + e.what() + "; reconnecting");
        }
        if (m_stop.load()) break;
        pollfd p{m_wake[0], POLLIN, 0};
        ::poll(&p, 1, static_cast<int>(m_options.reconnect_delay.count()));
        char buf[64];
        while (::read(m_wake[0], buf, sizeof buf) > 0) {
        }
    }
    set_all_listening(false);
}

}  // namespace kakunin::pg
