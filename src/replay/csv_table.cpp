// The CSV table the replay inputs are read with.
#include "replay/csv_table.hpp"

#include <algorithm>

#include "kakunin/error.hpp"
#include "kakunin/replay.hpp"

namespace kakunin::csv {

bool split_record(const std::string& line, std::vector<std::string>& fields) {
    fields.clear();
    std::string field;
    std::size_t i = 0;
    for (;;) {
        field.clear();
        if (i < line.size() && line[i] == '"') {
            ++i;
            for (;;) {
                if (i >= line.size()) return false;  // unterminated
                if (line[i] == '"') {
                    if (i + 1 < line.size() && line[i + 1] == '"') {
                        field.push_back('"');
                        i += 2;
                        continue;
                    }
                    ++i;
                    break;
                }
                field.push_back(line[i++]);
            }
            if (i < line.size() && line[i] != ',') return false;  // text after closing quote
        } else {
            while (i < line.size() && line[i] != ',') {
                if (line[i] == '"') return false;
                field.push_back(line[i++]);
            }
        }
        fields.push_back(field);
        if (i >= line.size()) return true;
        ++i;  // the comma
    }
}

Table::Table(std::istream& in, std::string name, std::vector<Column> columns, std::string header)
    : m_in(in),
      m_name(std::move(name)),
      m_columns(std::move(columns)),
      m_where(m_columns.size(), -1) {
    while (std::getline(m_in, m_text)) {
        ++m_line;
        if (!m_text.empty() && m_text.back() == '\r') m_text.pop_back();
        if (m_line == 1 && m_text.size() >= 3 && m_text.compare(0, 3, "\xEF\xBB\xBF") == 0)
            m_text.erase(0, 3);  // UTF-8 byte order mark
        if (!m_text.empty()) break;
    }
    if (m_text.empty()) {
        if (m_line == 0) m_line = 1;
        fail("empty file: no header line");
    }
    if (!split_record(m_text, m_fields)) fail("malformed quoting in the header");
    for (std::size_t i = 0; i < m_fields.size(); ++i) {
        const auto it = std::find_if(m_columns.begin(), m_columns.end(),
                                     [&](const Column& c) { return m_fields[i] == c.name; });
        if (it == m_columns.end()) fail("unknown column '" + m_fields[i] + "'");
        int& where = m_where[static_cast<std::size_t>(it - m_columns.begin())];
        if (where >= 0) fail("duplicate column '" + m_fields[i] + "'");
        where = static_cast<int>(i);
    }
    for (std::size_t c = 0; c < m_columns.size(); ++c)
        if (m_columns[c].required && m_where[c] < 0)
            fail(std::string("missing column '") + m_columns[c].name + "' (header: " + header +
                 ")");
    m_width = m_fields.size();
}

bool Table::next() {
    while (std::getline(m_in, m_text)) {
        ++m_line;
        if (!m_text.empty() && m_text.back() == '\r') m_text.pop_back();
        if (m_text.empty()) continue;
        if (!split_record(m_text, m_fields)) fail("malformed quoting");
        if (m_fields.size() != m_width)
            fail("expected " + std::to_string(m_width) + " fields, found " +
                 std::to_string(m_fields.size()));
        return true;
    }
    if (m_in.bad()) throw Error(ErrorCategory::io, m_name + ": read error");
    return false;
}

const std::string& Table::text(std::size_t column) const {
    static const std::string none;
    return has(column) ? m_fields[static_cast<std::size_t>(m_where[column])] : none;
}

void Table::fail(const std::string& what) const {
    throw Error(ErrorCategory::invalid_input, m_name + ":" + std::to_string(m_line) + ": " + what);
}

void Table::fail(std::size_t column, const std::string& what) const {
    fail(std::string(m_columns[column].name) + ": " + what);
}

Decimal Table::decimal(std::size_t column) const {
    const auto d = try_parse_decimal(text(column));
    if (!d) fail(column, "'" + text(column) + "' is not a decimal number");
    return *d;
}

std::optional<Decimal> Table::optional_decimal(std::size_t column) const {
    if (text(column).empty()) return std::nullopt;
    return decimal(column);
}

Side Table::side(std::size_t column) const {
    const std::string& s = text(column);
    if (s == "BUY") return Side::buy;
    if (s == "SELL") return Side::sell;
    fail(column, "'" + s + "' is neither BUY nor SELL");
}

std::optional<Side> Table::optional_side(std::size_t column) const {
    if (text(column).empty()) return std::nullopt;
    return side(column);
}

TimeNs Table::timestamp_in_order(std::size_t column) {
    TimeNs t = 0;
    try {
        t = parse_timestamp(text(column));
    } catch (const Error& e) {
        fail(column, e.what());
    }
    if (t < m_previous_ts)
        fail(column, "rows must be in time order (this row is earlier than the one before)");
    m_previous_ts = t;
    return t;
}

}  // namespace kakunin::csv
