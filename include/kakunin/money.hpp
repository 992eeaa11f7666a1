// kakunin/money.hpp — ISO 4217 currency codes and amounts of money.
//
//   kakunin::Money limit{kakunin::Currency::parse("EUR"), kakunin::parse_decimal("500000.00")};
//   bool ok = kakunin::is_iso4217("EUR");   // true; "USDT" and "XXX" are not currencies here
#pragma once

#include <cstdint>
#include <cstring>
#include <string>
#include <string_view>

#include "kakunin/decimal.hpp"

namespace kakunin {

/// Active ISO 4217 alphabetic codes (list of 2024; XXX "no currency" left out on purpose).
inline bool is_iso4217(std::string_view code) noexcept {
    static constexpr std::string_view codes =
        "AED AFN ALL AMD ANG AOA ARS AUD AWG AZN BAM BBD BDT BGN BHD BIF BMD BND BOB BOV BRL BSD "
        "BTN BWP BYN BZD CAD CDF CHE CHF CHW CLF CLP CNY COP COU CRC CUC CUP CVE CZK DJF DKK DOP "
        "DZD EGP ERN ETB EUR FJD FKP GBP GEL GHS GIP GMD GNF GTQ GYD HKD HNL HTG HUF IDR ILS INR "
        "IQD IRR ISK JMD JOD JPY KES KGS KHR KMF KPW KRW KWD KYD KZT LAK LBP LKR LRD LSL LYD MAD "
        "MDL MGA MKD MMK MNT MOP MRU MUR MVR MWK MXN MXV MYR MZN NAD NGN NIO NOK NPR NZD OMR PAB "
        "PEN PGK PHP PKR PLN PYG QAR RON RSD RUB RWF SAR SBD SCR SDG SEK SGD SHP SLE SLL SOS SRD "
        "SSP STN SVC SYP SZL THB TJS TMT TND TOP TRY TTD TWD TZS UAH UGX USD USN UYI UYU UYW UZS "
        "VED VES VND VUV WST XAF XAG XAU XBA XBB XBC XBD XCD XCG XDR XOF XPD XPF XPT XSU XTS XUA "
        "YER ZAR ZMW ZWG ZWL";
    if (code.size() != 3) return false;
    for (std::size_t i = 0; i + 3 <= codes.size(); i += 4)
        if (codes.compare(i, 3, code) == 0) return true;
    return false;
}

/// Three upper-case letters packed into an integer so the hot path compares in one instruction.
class Currency {
public:
    constexpr Currency() noexcept = default;

    /// Throws kakunin::Error (invalid_input) unless `code` is an ISO 4217 alphabetic code.
    static Currency parse(std::string_view code) {
        if (!is_iso4217(code))
            throw Error(ErrorCategory::invalid_input,
                        "'" + std::string(code) + "' is not an ISO 4217 currency code");
        return Currency(pack(code));
    }
    /// Packs any 1..7-byte text (e.g. an instrument's quote part) for comparison; no validation.
    static constexpr std::uint64_t pack(std::string_view code) noexcept {
        std::uint64_t v = 0;
        for (std::size_t i = 0; i < code.size() && i < 7; ++i)
            v |= static_cast<std::uint64_t>(static_cast<unsigned char>(code[i])) << (8 * i);
        return code.size() > 7 ? ~std::uint64_t{0} : v | (std::uint64_t{code.size()} << 56);
    }
    constexpr std::uint64_t packed() const noexcept { return m_packed; }
    bool empty() const noexcept { return m_packed == 0; }
    std::string code() const {
        std::string s;
        for (int i = 0; i < 7; ++i) {
            char c = static_cast<char>((m_packed >> (8 * i)) & 0xff);
            if (c == 0) break;
            s.push_back(c);
        }
        return s;
    }
    friend constexpr bool operator==(Currency a, Currency b) noexcept {
        return a.m_packed == b.m_packed;
    }
    friend constexpr bool operator!=(Currency a, Currency b) noexcept { return !(a == b); }

private:
    constexpr explicit Currency(std::uint64_t packed) noexcept : m_packed(packed) {}
    std::uint64_t m_packed = 0;
};

struct Money {
    Currency currency;
    Decimal amount;
};

}  // namespace kakunin
