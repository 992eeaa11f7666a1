// A small real HTTP/1.1 server for tests: POSIX sockets on 127.0.0.1, an ephemeral port, one
// thread per connection, keep-alive. It records every request (method, target, headers, body,
// which connection it came on, when it was complete) and answers as told: 500 (or any status)
// for the first N requests, a fixed status, a delay before answering, or nothing at all once
// closed.
//
//   kakunin::test::HttpTestServer server;
//   server.fail_first(2);                                // 500, 500, then 200
//   ... POST to server.url("/hook") ...
//   REQUIRE(server.wait_for_requests(3, std::chrono::seconds(5)));
#pragma once

#include <arpa/inet.h>
#include <netinet/in.h>
#include <sys/socket.h>
#include <unistd.h>

#include <algorithm>
#include <cctype>
#include <cerrno>
#include <chrono>
#include <condition_variable>
#include <cstdint>
#include <cstring>
#include <memory>
#include <mutex>
#include <set>
#include <stdexcept>
#include <string>
#include <string_view>
#include <thread>
#include <utility>
#include <vector>

namespace kakunin::test {

struct HttpRequest {
    std::string method;
    std::string target;
    std::vector<std::pair<std::string, std::string>> headers;  ///< in arrival order
    std::string body;
    std::size_t connection = 0;  ///< 1, 2, ... in order of accept
    std::chrono::steady_clock::time_point received;

    /// The first header of that name (case-insensitive), or "" when absent.
    std::string header(std::string_view name) const {
        for (const auto& h : headers)
            if (same_name(h.first, name)) return h.second;
        return {};
    }
    bool has_header(std::string_view name) const {
        for (const auto& h : headers)
            if (same_name(h.first, name)) return true;
        return false;
    }
    static bool same_name(std::string_view a, std::string_view b) {
        return a.size() == b.size() &&
               std::equal(a.begin(), a.end(), b.begin(), [](char x, char y) {
                   return std::tolower(static_cast<unsigned char>(x)) ==
                          std::tolower(static_cast<unsigned char>(y));
               });
    }
};

class HttpTestServer {
public:
    HttpTestServer() {
        m_listen = ::socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
        if (m_listen < 0) throw std::runtime_error("HttpTestServer: socket: " + errno_text());
        sockaddr_in addr{};
        addr.sin_family = AF_INET;
        addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
        addr.sin_port = 0;  // ephemeral
        socklen_t len = sizeof addr;
        if (::bind(m_listen, reinterpret_cast<sockaddr*>(&addr), sizeof addr) != 0 ||
            ::listen(m_listen, 64) != 0 ||
            ::getsockname(m_listen, reinterpret_cast<sockaddr*>(&addr), &len) != 0) {
            const std::string e = errno_text();
            ::close(m_listen);
            throw std::runtime_error("HttpTestServer: bind/listen: " + e);
        }
        m_port = ntohs(addr.sin_port);
        m_acceptor = std::thread([this] { accept_loop(); });
    }

    ~HttpTestServer() { close(); }
    HttpTestServer(const HttpTestServer&) = delete;
    HttpTestServer& operator=(const HttpTestServer&) = delete;

    std::uint16_t port() const { return m_port; }
    std::string url(const std::string& path = "/hook") const {
        return "http://127.0.0.1:" + std::to_string(m_port) + path;
    }

    /// Answer `status` to the next `n` requests (counted from the first request ever).
    void fail_first(std::size_t n, int status = 500) {
        std::lock_guard<std::mutex> lock(m_mutex);
        m_fail_first = n;
        m_fail_status = status;
    }
    /// The status of every other request (default 200).
    void set_status(int status) {
        std::lock_guard<std::mutex> lock(m_mutex);
        m_status = status;
    }
    /// A Retry-After header (seconds) on non-2xx answers; negative: none.
    void set_retry_after(int seconds) {
        std::lock_guard<std::mutex> lock(m_mutex);
        m_retry_after = seconds;
    }
    /// Wait this long after a request is complete before answering (interrupted by close()).
    void set_delay(std::chrono::milliseconds delay) {
        std::lock_guard<std::mutex> lock(m_mutex);
        m_delay = delay;
    }

    /// Stops listening and closes every connection; afterwards nothing listens on port().
    /// Idempotent.
    void close() {
        {
            std::lock_guard<std::mutex> lock(m_mutex);
            if (m_closed) return;
            m_closed = true;
            ::shutdown(m_listen, SHUT_RDWR);  // wakes accept()
            for (int fd : m_open) ::shutdown(fd, SHUT_RDWR);
        }
        m_changed.notify_all();
        if (m_acceptor.joinable()) m_acceptor.join();
        ::close(m_listen);
        std::vector<std::thread> workers;
        {
            std::lock_guard<std::mutex> lock(m_mutex);
            workers.swap(m_workers);
        }
        for (auto& t : workers) t.join();
    }

    std::vector<HttpRequest> requests() const {
        std::lock_guard<std::mutex> lock(m_mutex);
        return m_requests;
    }
    std::size_t request_count() const {
        std::lock_guard<std::mutex> lock(m_mutex);
        return m_requests.size();
    }
    std::size_t connection_count() const {
        std::lock_guard<std::mutex> lock(m_mutex);
        return m_connections;
    }
    bool wait_for_requests(std::size_t n, std::chrono::milliseconds timeout) const {
        std::unique_lock<std::mutex> lock(m_mutex);
        return m_changed.wait_for(lock, timeout, [&] { return m_requests.size() >= n; });
    }

private:
    static std::string errno_text() { return std::strerror(errno); }

    void accept_loop() {
        for (;;) {
            const int fd = ::accept4(m_listen, nullptr, nullptr, SOCK_CLOEXEC);
            std::lock_guard<std::mutex> lock(m_mutex);
            if (fd < 0) {
                if (m_closed) return;
                if (errno == EINTR || errno == ECONNABORTED) continue;
                return;
            }
            if (m_closed) {
                ::close(fd);
                return;
            }
            m_open.insert(fd);
            const std::size_t id = ++m_connections;
            m_workers.emplace_back([this, fd, id] { serve(fd, id); });
        }
    }

    /// Reads until `buffer` holds `needed` bytes; false on EOF or error.
    static bool fill(int fd, std::string& buffer, std::size_t needed) {
        char chunk[4096];
        while (buffer.size() < needed) {
            const ssize_t n = ::recv(fd, chunk, sizeof chunk, 0);
            if (n < 0 && errno == EINTR) continue;
            if (n <= 0) return false;
            buffer.append(chunk, static_cast<std::size_t>(n));
        }
        return true;
    }

    static std::string lower(std::string s) {
        for (char& c : s) c = static_cast<char>(std::tolower(static_cast<unsigned char>(c)));
        return s;
    }

    static const char* reason(int status) {
        switch (status) {
            case 200: return "OK";
            case 204: return "No Content";
            case 301: return "Moved Permanently";
            case 400: return "Bad Request";
            case 401: return "Unauthorized";
            case 404: return "Not Found";
            case 411: return "Length Required";
            case 429: return "Too Many Requests";
            case 500: return "Internal Server Error";
            case 503: return "Service Unavailable";
            default: return "Status";
        }
    }

    void serve(int fd, std::size_t connection) {
        std::string buffer;
        for (;;) {
            // Head.
            std::size_t end = std::string::npos;
            while ((end = buffer.find("\r\n\r\n")) == std::string::npos)
                if (!fill(fd, buffer, buffer.size() + 1)) return finish(fd);
            HttpRequest r;
            r.connection = connection;
            const std::string head = buffer.substr(0, end);
            buffer.erase(0, end + 4);
            std::size_t line_end = head.find("\r\n");
            const std::string request_line = head.substr(0, line_end);
            const auto sp1 = request_line.find(' ');
            const auto sp2 = request_line.find(' ', sp1 + 1);
            if (sp1 == std::string::npos || sp2 == std::string::npos) return finish(fd);
            r.method = request_line.substr(0, sp1);
            r.target = request_line.substr(sp1 + 1, sp2 - sp1 - 1);
            std::size_t length = 0;
            bool close_after = false, chunked = false;
            while (line_end != std::string::npos) {
                const std::size_t start = line_end + 2;
                line_end = head.find("\r\n", start);
                const std::string line = head.substr(start, line_end - start);
                const auto colon = line.find(':');
                if (colon == std::string::npos) continue;
                std::string name = line.substr(0, colon);
                std::string value = line.substr(colon + 1);
                value.erase(0, value.find_first_not_of(" \t"));
                value.erase(value.find_last_not_of(" \t") + 1);
                const std::string lname = lower(name);
                if (lname == "content-length") {
                    if (value.empty() || value.size() > 9 ||
                        value.find_first_not_of("0123456789") != std::string::npos) {
                        respond(fd, 400, true);
                        return finish(fd);
                    }
                    length = std::stoul(value);
                }
                if (lname == "connection" && lower(value) == "close") close_after = true;
                if (lname == "transfer-encoding") chunked = true;
                r.headers.emplace_back(std::move(name), std::move(value));
            }
            if (chunked) {
                respond(fd, 411, false);
                return finish(fd);
            }
            // Body.
            if (!fill(fd, buffer, length)) return finish(fd);
            r.body = buffer.substr(0, length);
            buffer.erase(0, length);
            r.received = std::chrono::steady_clock::now();

            int status;
            std::chrono::milliseconds delay;
            {
                std::lock_guard<std::mutex> lock(m_mutex);
                const std::size_t index = m_requests.size();
                m_requests.push_back(std::move(r));
                status = index < m_fail_first ? m_fail_status : m_status;
                delay = m_delay;
            }
            m_changed.notify_all();
            if (delay.count() > 0) {
                std::unique_lock<std::mutex> lock(m_mutex);
                if (m_changed.wait_for(lock, delay, [&] { return m_closed; })) {
                    lock.unlock();
                    return finish(fd);
                }
            }
            if (!respond(fd, status, close_after) || close_after) return finish(fd);
        }
    }

    bool respond(int fd, int status, bool close_after) {
        int retry_after;
        {
            std::lock_guard<std::mutex> lock(m_mutex);
            retry_after = m_retry_after;
        }
        const std::string body = std::to_string(status) + "\n";
        std::string out =
            "HTTP/1.1 " + std::to_string(status) + " " + reason(status) +
            "\r\nContent-Type: text/plain\r\nContent-Length: " + std::to_string(body.size()) +
            "\r\n";
        if (retry_after >= 0 && (status < 200 || status >= 300))
            out += "Retry-After: " + std::to_string(retry_after) + "\r\n";
        if (close_after) out += "Connection: close\r\n";
        out += "\r\n" + body;
        std::size_t sent = 0;
        while (sent < out.size()) {
            const ssize_t n = ::send(fd, out.data() + sent, out.size() - sent, MSG_NOSIGNAL);
            if (n < 0 && errno == EINTR) continue;
            if (n <= 0) return false;
            sent += static_cast<std::size_t>(n);
        }
        return true;
    }

    void finish(int fd) {
        std::lock_guard<std::mutex> lock(m_mutex);
        m_open.erase(fd);
        ::close(fd);
    }

    int m_listen = -1;
    std::uint16_t m_port = 0;
    std::thread m_acceptor;

    mutable std::mutex m_mutex;
    mutable std::condition_variable m_changed;
    bool m_closed = false;
    std::set<int> m_open;
    std::vector<std::thread> m_workers;
    std::size_t m_connections = 0;
    std::vector<HttpRequest> m_requests;
    std::size_t m_fail_first = 0;
    int m_fail_status = 500;
    int m_status = 200;
    int m_retry_after = -1;
    std::chrono::milliseconds m_delay{0};
};

}  // namespace kakunin::test
