"""The label grammar of the synthetic crops: what text `crnn.training.synth` renders.

`LabelGrammar.text(rng)` is one token of a business form (FUNSD-like: words, short tokens, numbers,
dates and times, phone numbers, codes, e-mail and web addresses, field labels, rare symbols) or a
multi-word line (receipt items, form fields, addresses, prose); `LabelGrammar.receipt(rng)` is one
receipt line (SROIE-like: prices, quantities, tax codes, labels, items, dates, tel/fax, company and GST
numbers, addresses, document numbers, footers) and the indices of the spaces between its columns.
Labels are printable ASCII with single spaces. Everything is drawn from the caller's `random.Random`
and nothing else, so a seed gives the same labels (and, through `TextRenderer`, the same crops).

Words: WORDS_FILE (Debian's wamerican); without it a built-in list is used.
"""

from __future__ import annotations

import math
import random
import string
from functools import lru_cache

WORDS_FILE = "/usr/share/dict/american-english"

_COMMON = """the of and to in for is on that by this with from at as be are or it an was not will your
date name yes no total page form report please new per our all any may must company account amount
number address phone fax signature approved subject program product brand sales market research
division department office project budget cost invoice order quantity price description item unit
tax subtotal balance due paid cash change receipt customer store street suite city state zip code
telephone manager director president review results test data sample study analysis request
approval received sent copy file attached meeting agenda minutes notes contract agreement period
year month week day time hours rate fee charge credit check payment services shipping delivery
purchase vendor supplier client employee insurance policy claim medical plan cigarettes tobacco
smoking filter menthol lights carton pack premium coffee latte tea water bread lunch special pending
completed revised final draft confidential original first last initial country national
international attention reference information memo fiscal quarter annual estimate actual""".split()
_SHORT = """a a A I of of to to in in on at by or is it be as an no No we us Mr. Dr. Ms. Co. Inc St.
Ave PO P.O. Jr. ft lb. lbs oz. ea. pp. Vol. No. Ext. Tel Fax cc: Re: RE: To: TO: Yes YES NO OK AM PM
am pm vs. etc & / - : # $ % ( ) * , . x @ 1/2 #1 the The THE and AND for For FOR are was you""".split()
_MONTHS = "January February March April May June July August September October November December".split()
_FIELDS = """Date: DATE: Name: NAME: To: From: FROM: Re: Subject: SUBJECT: Phone: Tel. Fax: Account_No.
Invoice_# P.O._No. Total: Amount: Signature: Title: Address: E-mail: Ref. TIME: Brand: Dept.""".split()
_RECEIPT = "TOTAL SUBTOTAL TAX CASH CHANGE BALANCE_DUE AMOUNT_DUE VISA TIP DISCOUNT".split()
_RARE = "!\"'*+;<=>?@[\\]^_`{|}~%&"
_PAIRS = {"<": ">", "[": "]", "{": "}", "(": ")"}
_TLDS = ".com .com .org .net .edu .gov .co.uk .io .us .biz".split()

# ---- receipt vocabulary (SROIE: Malaysian shop and restaurant receipts) ----
_R_ITEMS = """NASI LEMAK|NASI GORENG|NASI AYAM|MEE GORENG|MEE REBUS|KUEY TEOW|CHAR KUEY TEOW|BIHUN SUP|ROTI CANAI|
ROTI TELUR|TEH TARIK|TEH O|TEH O AIS|KOPI|KOPI O|KOPI (B)|MILO AIS|SIRAP LIMAU|AYAM GORENG|IKAN BAKAR|TELUR MATA|
SAYUR CAMPUR|WHITE RICE|RICE|CHAM (B)|CHICKEN CHOP|FISH BALL|SUSHI SET|GREEN TEA|MINERAL WATER|100PLUS|COCA COLA|
MAGGI KARI|NESCAFE|DUTCH LADY|GARDENIA|SUGAR|FLOUR|COOKING OIL|SOY SAUCE|DETTOL|CLOROX|COLGATE|SHIELDTOX|GLAD WRAP|
GARBAGE BAG|TISSUE ROLL|A4 PAPER|BATTERY|EXT CORD|PVC PIPE|CABLE TIE|SCREW|PAINT BRUSH|MASKING TAPE|SUPER GLUE|
PEN|NOTEBOOK|ENVELOPE|STAPLER|FILE|MARKER|CORRECTION TAPE|STICKER|THERMAL ROLL|KCL|SOH HOON|HOKKIEN MEE|WAN TAN MEE|
CHAR SIU|BAK KUT TEH|YONG TAU FOO|CHEESE|PEANUT|ICE LEMON TEA|LATTE|CAPPUCCINO|MOCHA|AMERICANO|DONUT|CURRY PUFF|
CAKE|BUN|SANDWICH|FRIES|BURGER|NUGGETS|SPRING ROLL|DIM SUM|PAU|TAUFU|UDANG|SOTONG|DAGING|KAMBING|LAKSA|CENDOL|
FLOOR MAT|HANGER|BUCKET|SPONGE|BROOM|LED BULB|SOCKET|PLUG|DRILL BIT|SANDPAPER|RUBBER BAND|SCISSORS|GIFT BOX|
MULTI PURPOSE PAPER|DECO STICKER|PHOTO FRAME|WATER BOTTLE|LUNCH BOX|TOOTHBRUSH|SHAMPOO|SOAP|DETERGENT""".split("|")
_R_MODS = """600ML 1.5L 500ML 5KG 1KG 500G 250G 12S 10S 2PC 3PCS 80GSM A4 A5 (L) (M) (S) (B) (BLUE) (RED) (BIG)
(SMALL) MP FIK TIN BTL PKT CTN SET 3IN1 XL 2X3M 6' 4.5X9.75 NO.2 HB -PTC 1'S 70G 24S 5M 10M""".split()
_R_WORDS = """TOTAL SUBTOTAL SUB-TOTAL TAX CASH CHANGE AMOUNT AMT QTY ITEM PRICE DESCRIPTION DISCOUNT ROUNDING GST
INVOICE RECEIPT CASHIER DATE TIME TABLE BILL NO. CODE U.PRICE S/PRICE UNIT NETT NET DISC SERVICE CHARGE PAYMENT
CREDIT CARD VISA MASTER DEBIT TENDER BALANCE DUE SAVINGS MEMBER POINTS REF TERMINAL POS COUNTER STAFF OPERATOR""".split()
_R_LABELS = """TOTAL|TOTAL:|TOTAL :|SUBTOTAL|SUB-TOTAL|SUB TOTAL|TAX|TAX(RM)|TAX (RM)|AMOUNT|AMOUNT(RM)|AMT(RM)|AMT|
(RM)|(MYR)|CASH|CASH :|CHANGE|CHANGE :|CHANGE DUE|QTY|QTY:|ITEM|ITEMS|DESCRIPTION|DESC|PRICE|U.PRICE|U/P|S/PRICE|
UNIT PRICE|DISCOUNT|DISCOUNT :|DISC|ROUNDING|ROUNDING :|ROUNDING ADJ|ROUNDING ADJUSTMENT|ROUNDING ADJUSTMENT :|
GST|GST:|GST SUMMARY|TAX INVOICE|SIMPLIFIED TAX INVOICE|TAX CODE|CODE|DATE|DATE:|TIME|TIME:|CASHIER|CASHIER:|
TOTAL QTY:|TOTAL ITEMS:|NET TOTAL|NETT TOTAL|GRAND TOTAL|TOTAL SALES|TOTAL AMOUNT|AMOUNT DUE|BALANCE|TENDERED|
PAYMENT|CREDIT CARD|VISA|MASTERCARD|DEBIT CARD|TOTAL SAVINGS|TOTAL 0% SUPPLIES:|TOTAL (EXCLUDING GST):|
TOTAL (INCLUSIVE OF GST):|TOTAL INCL. GST|SERVICE CHARGE|SERV. CHARGE (10%):|GST PAYABLE (6%):|CUSTOMER'S COPY|
OFFICIAL RECEIPT|CASH SALES|CASH BILL|RECEIPT|INVOICE|QTY ITEM|ITEM QTY|NO.|MEMBER|POINTS|CHANGE RM|CREDIT RM""".split("|")
_R_CODES = "SR SR SR *S S Z ZR ZRL T D E X * % : RM (RM) (MYR) SR@6% 6% 0%".split()
_R_PLACES = """KUALA LUMPUR|SELANGOR|PUCHONG|SHAH ALAM|PETALING JAYA|KLANG|CHERAS|KEPONG|SERI KEMBANGAN|JOHOR BAHRU|
SUBANG JAYA|AMPANG|KAJANG|RAWANG|SEMENYIH|BANGI|DENGKIL|BALAKONG|SETAPAK|SENTUL|BANDAR BARU BANGI|SKUDAI|
PERMAS JAYA|MELAKA|SEREMBAN|IPOH|PENANG|W.P. KUALA LUMPUR|SELANGOR DARUL EHSAN|JOHOR""".split("|")
_R_STREET = """SETIA INDAH|PERMAS|KLANG LAMA|BESAR|PELABUR|KPB|PUCHONG UTAMA|SERI KEMBANGAN|INDAH PERDANA|MERDEKA|
BUKIT BINTANG|DAMANSARA|AMPANG|TUN RAZAK|SULTAN ISMAIL|IPOH|KUCHAI LAMA|MAHKOTA|BALAKONG JAYA|USJ|SS|PJU|TASIK|
PERINDUSTRIAN|BAYAN LEPAS|MUTIARA|DESA|SRI HARTAMAS|CHERAS|SEGAMBUT|KEPONG BARU""".split("|")
_R_ROADS = "JALAN JALAN JALAN JLN LORONG PERSIARAN LEBUH TAMAN BANDAR KAWASAN PERINDUSTRIAN SEKSYEN".split()
_R_SHOP = """SDN BHD|SDN. BHD.|S/B|ENTERPRISE|TRADING|HARDWARE|MART|STATIONERY|BOOKSTORE|RESTORAN|RESTAURANT|CAFE|
BAKERY|SUPERMARKET|MINI MARKET|FOOD COURT|KEDAI MAKAN|(M) SDN BHD|GIFT SHOP|PHARMACY|ELECTRICAL|TRADING CO.""".split("|")
_R_NAMES = """SITI AMINAH|ANNIE|AHMAD|LIM|TAN|WONG|RAJ|NURUL|FARAH|MUTHU|KUMAR|LEE|CHONG|AZMAN|HAFIZ|MEI LING|
OPERATOR|TRAINEE|ADMIN|MANAGER|STAFF 01|CASHIER 2""".split("|")
_R_PHRASES = """THANK YOU|THANK YOU. PLEASE COME AGAIN|PLEASE COME AGAIN|THANK YOU FOR YOUR PATRONAGE|
GOODS SOLD ARE NOT RETURNABLE OR REFUNDABLE|GOODS SOLD ARE NOT RETURNABLE & REFUNDABLE|STRICTLY NO CASH REFUND.|
EXCHANGE ARE ALLOWED WITHIN 7 DAYS WITH RECEIPT.|PRICES ARE INCLUSIVE OF GST|PLEASE KEEP THIS RECEIPT|
THIS IS A COMPUTER GENERATED RECEIPT|NO SIGNATURE REQUIRED|WE LOVE TO HEAR YOUR FEEDBACK|
KEEP THIS RECEIPT FOR WARRANTY PURPOSE|SEE YOU AGAIN|HAVE A NICE DAY|NOT ALLOWED ONCE ISSUED.|
THE MANAGEMENT RESERVES THE RIGHT TO|TO VIEW OUR PERSONAL DATA PROTECTION POLICY|OPEN DAILY 10AM TO 10PM|
SHOPPING HOURS|BUSINESS HOURS|FOLLOW US ON FACEBOOK|ITEMS SOLD ARE NOT EXCHANGEABLE""".split("|")
# Kept upper case when the rest of the line is not: units, currency, tax and company abbreviations.
_R_KEEP_UPPER = set("RM MYR GST SST SR ZR ZRL SDN BHD S/B KL ID POS QTY NO. TEL FAX ML KG PC PCS PKT CTN "
                    "A4 A5 HB XL B M S L T D E X AM PM".split())
_R_MAX_CHARS = 55  # the longest SROIE line label


@lru_cache(maxsize=4)
def _load_words(path: str) -> tuple[str, ...]:
    """Words of the list at `path`; empty if it is missing."""
    try:
        with open(path, encoding="utf-8", errors="replace") as fh:
            return tuple(w for w in fh.read().split() if w.isascii() and w.isalpha() and len(w) < 16)
    except OSError:
        return ()


class LabelGrammar:
    """Makes the labels of synthetic crops: `text` (form tokens and lines), `receipt` (receipt lines).

    Holds no random state: every call draws from the `rng` it is given.

    Args:
        words_file: word list (one word a line) for the dictionary words; missing: a built-in list.
        line_prob: share of `text` labels that are multi-word lines rather than single tokens.
        max_line_chars: longest line `text` makes.
    """

    def __init__(self, words_file: str = WORDS_FILE, line_prob: float = 0.2, max_line_chars: int = 70):
        self.line_prob, self.max_line_chars = line_prob, max_line_chars
        listed = _load_words(words_file)
        self.words = listed or tuple(_COMMON)
        self.words_source = words_file if listed else "built-in list"

    # ---- text ------------------------------------------------------------------
    def text(self, rng: random.Random) -> str:
        """One label: a document token (word, number, date, code...) or a multi-word line."""
        s = self._line(rng) if rng.random() < self.line_prob else self._token(rng)
        return " ".join(s.split()) or "a"

    def _token(self, rng: random.Random) -> str:
        # words 40%, short tokens 24% (with short words, ~1/3 of tokens have <= 3 chars as in FUNSD),
        # numbers 10%, dates/times 6%, phones 3%, codes 4.5%, e-mail/web 2.5%, labels 2.5%, rare symbols 7.5%
        r = rng.random()
        for p, fn in ((0.40, self._word), (0.64, self._short), (0.74, self._number),
                      (0.80, self._date), (0.83, self._phone), (0.875, self._code),
                      (0.9, self._web), (0.925, self._label)):
            if r < p:
                return fn(rng)
        return self._symbol(rng)

    def _plain(self, rng: random.Random) -> str:
        # half from the form vocabulary: uniform draws from 75k dictionary words are mostly rare words
        return rng.choice(_COMMON) if rng.random() < 0.5 else rng.choice(self.words)

    def _cased(self, w: str, rng: random.Random) -> str:
        r = rng.random()
        return w.lower() if r < 0.5 else w[:1].upper() + w[1:] if r < 0.72 else w.upper()

    def _word(self, rng: random.Random) -> str:
        w = self._cased(self._plain(rng), rng)
        if rng.random() < 0.15:
            w += rng.choice(",,..::;)-")
        if rng.random() < 0.04:
            w = rng.choice("(\"'") + w
        return w

    def _short(self, rng: random.Random) -> str:
        r = rng.random()
        if r < 0.4:
            return rng.choice(_SHORT)
        if r < 0.52:
            return rng.choice(string.ascii_uppercase) + "."  # initials: 'M.'
        if r < 0.72:
            return str(rng.randrange(10 ** rng.randint(1, 3))) + rng.choice(["", "", "", "/", ".", ","])
        if r < 0.92:
            return self._cased("".join(rng.choices(string.ascii_lowercase, k=rng.randint(1, 3))), rng)
        return rng.choice(":/-&#$()*,.")

    def _number(self, rng: random.Random) -> str:
        n, r = int(10 ** rng.uniform(0, 7)), rng.random()
        money = f"{n:,}.{rng.randrange(100):02d}" if rng.random() < 0.7 else f"{n % 1000}.{rng.randrange(100):02d}"
        if r < 0.25:
            return str(n)
        if r < 0.45:
            return f"{n:,}"
        if r < 0.68:
            return "$" + money
        if r < 0.8:
            return money
        if r < 0.87:
            return f"{rng.uniform(0, 100):.{rng.randint(0, 2)}f}%"
        if r < 0.94:
            return f"({n:,})" if rng.random() < 0.5 else f"-{n}"
        return f"{rng.randint(1, 15)}/{rng.choice([2, 3, 4, 8, 16])}"

    def _date(self, rng: random.Random) -> str:
        y, m, d = rng.randint(1950, 2030), rng.randint(1, 12), rng.randint(1, 28)
        yy, mon = f"{y % 100:02d}", _MONTHS[m - 1]
        h, mi = rng.randint(1, 12), rng.randrange(60)
        return rng.choice([
            f"{m}/{d}/{yy}", f"{m:02d}/{d:02d}/{y}", f"{y}-{m:02d}-{d:02d}", f"{d}-{mon[:3]}-{yy}",
            f"{d:02d}.{m:02d}.{y}", f"{mon[:3].upper()}-{d:02d}-{y}", f"{m}/{d}", str(y), f"{mon[:3]}.",
            mon, mon.upper(), f"{d},", f"{m}/{yy}", f"{h}:{mi:02d}", f"{h + 11}:{mi:02d}:{rng.randrange(60):02d}",
            f"{h}:{mi:02d}{rng.choice(['AM', 'PM', 'am', 'pm', 'a.m.', 'p.m.'])}"])

    def _phone(self, rng: random.Random) -> str:
        a, b, c = rng.randint(200, 999), rng.randint(200, 999), rng.randrange(10000)
        return rng.choice([f"({a})", f"({a}){b}-{c:04d}", f"{a}-{b}-{c:04d}", f"{a}.{b}.{c:04d}",
                           f"{b}-{c:04d}", f"1-800-{b}-{c:04d}", f"+1-{a}-{b}-{c:04d}", f"x{c}"])

    def _code(self, rng: random.Random) -> str:
        parts = []
        for _ in range(rng.randint(1, 3)):
            r, k = rng.random(), rng.randint(1, 6)
            pool = string.digits if r < 0.5 else string.ascii_uppercase if r < 0.88 else string.ascii_lowercase
            parts.append("".join(rng.choices(pool, k=k if r < 0.5 else min(k, 4))))
        code = rng.choice("--//.#_:").join(parts)
        if rng.random() < 0.3:
            code = rng.choice(["#", "No.", "PO-", "ID#", "SKU:", "INV-", "Ref:", "Lot "]) + code
        return code

    def _web(self, rng: random.Random) -> str:
        short = [w for w in (self._plain(rng).lower() for _ in range(3)) if len(w) < 10] or ["info"]
        domain = short[0] + rng.choice(_TLDS)
        if rng.random() < 0.5:
            user = rng.choice([short[-1], rng.choice(string.ascii_lowercase) + rng.choice("._-") + short[-1],
                               short[-1] + str(rng.randrange(100))])
            s = f"{user}@{domain}"
        else:
            s = rng.choice(["www.", "http://", "https://www.", "http://www.", ""]) + domain
            if rng.random() < 0.4:
                query = rng.choice(["", "/", f"?id={rng.randrange(999)}&p=1", "#top"])
                s += "/" + rng.choice(["~", ""]) + short[-1] + query
        return s.upper() if rng.random() < 0.1 else s

    def _label(self, rng: random.Random) -> str:
        w = self._cased(self._plain(rng), rng)
        a, b = rng.choices(string.ascii_uppercase, k=2)
        return rng.choice([w + ":", w.upper() + ":", "(" + w, w + ")", f'"{w}"', f"'{w}'", w + "-",
                           f"{a}&{b}", w + "(s)", w + "/", w + ".", f"[{w}]", "*" + w, w + "?", w + "!",
                           "...", "--", f"({rng.randint(100, 999)})"])

    def _symbol(self, rng: random.Random) -> str:
        # uniform over the punctuation that other tokens rarely produce, so ` ~ ^ | \ { } < > are learnt too
        c, r = rng.choice(_RARE), rng.random()
        w = self._short(rng).strip(string.punctuation) or "x"
        if c in _PAIRS and r < 0.5:
            return c + w + _PAIRS[c]
        if r < 0.3:
            return c * rng.randint(1, 3)
        if r < 0.55:
            return w + c
        if r < 0.8:
            return c + w
        return w + c + self._cased(rng.choice(_COMMON), rng)

    def _line(self, rng: random.Random) -> str:
        r, amount = rng.random(), f"{rng.choice(['', '', '$'])}{rng.uniform(0.2, 250):.2f}"
        if r < 0.25:  # receipt
            item = " ".join(self._plain(rng).upper() for _ in range(rng.randint(1, 3)))
            toks = rng.choice([f"{rng.randint(1, 12)} x {item} {amount}", f"{item} {amount}",
                               f"{rng.choice(_RECEIPT).replace('_', ' ')} {amount}",
                               f"{rng.randint(2, 9)} @ {amount}"]).split()
        elif r < 0.5:  # form field
            value = rng.choice([self._date, self._phone, self._code, self._number, self._web, self._word])(rng)
            if rng.random() < 0.3:
                value = f"{rng.choice(_MONTHS)} {rng.randint(1, 31)}, {rng.randint(1950, 2030)}"
            elif rng.random() < 0.3:
                value = f"{rng.choice(string.ascii_uppercase)}. {self._cased(rng.choice(self.words), rng)}"
            toks = [rng.choice(_FIELDS).replace("_", " "), value]
        elif r < 0.6:  # address
            place = rng.choice(self.words).title()
            toks = rng.choice([
                f"{rng.randint(1, 9999)} {place} {rng.choice(['St.', 'Ave.', 'Road', 'Blvd.'])}",
                f"{place}, {''.join(rng.choices(string.ascii_uppercase, k=2))} {rng.randrange(100000):05d}",
                f"P.O. Box {rng.randint(1, 9999)}", f"Suite {rng.randint(100, 2000)}"]).split()
        else:  # prose mixed with the other token kinds
            target, toks = rng.randint(8, self.max_line_chars), []
            while sum(len(t) + 1 for t in toks) < target:
                toks.append(self._word(rng) if rng.random() < 0.6 else self._token(rng))
            s = rng.random()
            if s < 0.5:
                toks[0] = toks[0][:1].upper() + toks[0][1:]
            elif s < 0.7:
                toks = [t.upper() for t in toks]
        while len(toks) > 1 and len(" ".join(toks)) > self.max_line_chars:
            toks.pop()
        return " ".join(toks)[: self.max_line_chars]

    # ---- receipt text --------------------------------------------------------------
    def receipt_text(self, rng: random.Random) -> str:
        """One receipt line label (SROIE-like): single spaces, printable ASCII, at most 55 characters."""
        return self.receipt(rng)[0]

    def receipt(self, rng: random.Random) -> tuple[str, tuple[int, ...]]:
        """(label, indices of the spaces between its columns), cased as printed (mostly upper case)."""
        cols = [" ".join(c.split()) for c in self._receipt_columns(rng)]
        cols = [c for c in cols if c] or ["TOTAL"]
        while len(cols) > 1 and len(" ".join(cols)) > _R_MAX_CHARS:
            cols.pop()
        cols = self._receipt_case(cols, rng)
        text, gaps = "", []
        for c in cols:
            if text:
                gaps.append(len(text))
                text += " "
            text += c
        if len(text) > _R_MAX_CHARS:  # one long column: cut at a word boundary where there is one
            cut = text.rfind(" ", 0, _R_MAX_CHARS + 1)
            text = text[: cut if cut > 20 else _R_MAX_CHARS].strip()
            gaps = [i for i in gaps if i < len(text)]
        return text, tuple(gaps)

    def _receipt_case(self, cols: list[str], rng: random.Random) -> list[str]:
        # Receipts print mostly upper case; the rest is title or sentence case (SROIE's labels are all
        # upper case by convention; synthetic labels keep the printed case).
        r = rng.random()
        if r < 0.68:
            return [c.upper() for c in cols]

        def keep(w: str) -> bool:  # 'RM', 'GST', 'RM12.90' stay upper case
            return w.upper() in _R_KEEP_UPPER or any(c.isdigit() for c in w)

        def title(w: str) -> str:
            return w if keep(w) or not w[:1].isalpha() else w[:1].upper() + w[1:].lower()

        if r < 0.92:
            return [" ".join(title(w) for w in c.split(" ")) for c in cols]
        def lower(w: str) -> str:
            return w if keep(w) else w.lower()

        out = [" ".join(lower(w) for w in c.split(" ")) for c in cols]
        if r < 0.98:  # sentence case
            out[0] = out[0][:1].upper() + out[0][1:]
        return out

    def _money(self, rng: random.Random, tag: bool = True) -> str:
        v = math.exp(rng.uniform(math.log(0.05), math.log(800))) if rng.random() < 0.93 else rng.uniform(800, 20000)
        s = f"{v:,.2f}" if v >= 1000 and rng.random() < 0.6 else f"{v:.2f}"
        if rng.random() < 0.03:
            s = "0.00"
        r = rng.random()
        if r < 0.06:
            s = "-" + s
        elif r < 0.09:
            s = f"({s})"
        if not tag:
            return s
        r = rng.random()
        if r < 0.1:
            s = "RM" + s
        elif r < 0.17:
            s = "RM " + s
        elif r < 0.19:
            s = "$" + s
        r = rng.random()
        if r < 0.08:
            s += " " + rng.choice(["SR", "SR", "ZR", "S", "Z", "T", "*", "E"])
        elif r < 0.12:
            s += rng.choice(["SR", "S", "*", "Z", "-"])
        return s

    def _r_word(self, rng: random.Random) -> str:
        w = rng.choice(self.words) if rng.random() < 0.35 else rng.choice(_R_WORDS + _COMMON[:60])
        return w.upper()

    def _r_item(self, rng: random.Random) -> str:
        parts = [rng.choice(_R_ITEMS) if rng.random() < 0.7 else self._r_word(rng)]
        for _ in range(rng.choice([0, 0, 1, 1, 1, 2, 3])):
            parts.append(rng.choice(_R_MODS) if rng.random() < 0.55 else self._r_word(rng))
        if rng.random() < 0.12:
            parts.insert(0, str(rng.randint(1, 9999)))  # product number
        if rng.random() < 0.06:
            parts.insert(0, rng.choice(["*", "#", "1X", "2X"]))
        return " ".join(parts)

    def _r_qty(self, rng: random.Random) -> str:
        n = rng.choice([1, 1, 1, 1, 2, 2, 3, 4, 5, 6, 10, 12, 20])
        return rng.choice([str(n), str(n), f"{n}.00", f"{n}.000", f"{n} X", f"{n}X", f"{n} x", f"X{n}",
                           f"{n}PC", f"{n} PCS", f"{n} @", f"{n} UNIT"])

    def _r_date(self, rng: random.Random) -> str:
        y, m, d = rng.randint(2015, 2019), rng.randint(1, 12), rng.randint(1, 28)
        h, mi, se = rng.randrange(24), rng.randrange(60), rng.randrange(60)
        mon = _MONTHS[m - 1][:3].upper()
        date = rng.choice([f"{d:02d}-{m:02d}-{y % 100:02d}", f"{d:02d}-{m:02d}-{y}", f"{d:02d}/{m:02d}/{y}",
                           f"{d:02d}/{m:02d}/{y % 100:02d}", f"{y}-{m:02d}-{d:02d}", f"{d:02d}.{m:02d}.{y}",
                           f"{d:02d} {mon} {y}", f"{d}-{mon}-{y % 100:02d}", f"{d:02d}{mon}{y}"])
        h12 = f"{(h % 12) or 12}:{mi:02d}:{se:02d}{rng.choice(['PM', 'AM', ' PM', ' AM'])}"
        time = rng.choice([f"{h:02d}:{mi:02d}", f"{h:02d}:{mi:02d}:{se:02d}", h12, f"{h:02d}{mi:02d}"])
        r = rng.random()
        if r < 0.35:
            return f"{date} {time}"
        if r < 0.5:
            return date
        if r < 0.6:
            return time
        if r < 0.75:
            label = rng.choice(["DATE", "DATE:", "DATE :", "Date:", ":"])
            return f"{label} {date}" + (f" {time}" if rng.random() < 0.4 else "")
        if r < 0.88:
            return f"{rng.choice(['TIME', 'TIME:', 'TIME :', 'PRINT TIME :'])} {time}"
        till = f"{rng.choice(['SH01', 'POS01', 'T1', 'C2'])} {rng.choice(string.ascii_uppercase)}{rng.randint(1, 99)}"
        return f"{date} {time} {till}"

    def _r_phone(self, rng: random.Random) -> str:
        def num():
            area = rng.choice(["03", "03", "07", "04", "06", "05", "09", "012", "016", "019", "011"])
            a, b = rng.randrange(1000, 10000), rng.randrange(1000, 10000)
            return rng.choice([f"{area}-{a} {b}", f"{area}-{a}{b}", f"{area}-{a}-{b}", f"{area}-{str(a)[:3]} {b}",
                               f"{area} {a} {b}", f"+6{area}-{a} {b}"])
        tel = f"{rng.choice(['TEL:', 'TEL :', 'TEL', 'TEL NO:', 'PHONE:', 'TEL.'])} {num()}"
        r = rng.random()
        if r < 0.35:
            return f"{tel} {rng.choice(['FAX:', 'FAX :', 'FAX'])} {num()}"
        if r < 0.8:
            return tel
        if r < 0.9:
            return num()
        return f"{rng.choice(['CUSTOMER SERVICE HOTLINE :', 'HOTLINE:', 'WHATSAPP:'])} {num()}"

    def _r_company(self, rng: random.Random) -> str:
        name = " ".join(rng.choice(_R_ITEMS[:40] + _R_STREET) if rng.random() < 0.4 else self._r_word(rng)
                        for _ in range(rng.randint(1, 3)))
        reg = f"{rng.randint(1000, 1299999)}-{rng.choice(string.ascii_uppercase)}"
        r = rng.random()
        if r < 0.35:
            return f"{name} {rng.choice(_R_SHOP)}"
        if r < 0.55:
            return f"{name} {rng.choice(_R_SHOP)} ({reg})"
        if r < 0.8:
            return rng.choice([f"CO. NO. {reg}", f"({reg})", f"CO.REG: {reg}", f"(CO.REG :{reg})",
                               f"COMPANY NO: {reg}", f"ROC NO: {reg}", f"({reg}) {rng.choice(['', 'SDN BHD'])}"])
        return f"{rng.choice(['99', 'MR.', 'AEON', 'TESCO', 'ECONSAVE', 'MYNEWS', 'GUARDIAN', 'POPULAR'])} {name}"

    def _r_gst(self, rng: random.Random) -> str:
        gid = f"{rng.randrange(10 ** 12):012d}"
        return rng.choice([f"GST ID NO: {gid}", f"GST ID: {gid}", f"GST REG NO : {gid}", f"(GST ID NO :{gid})",
                           f"GST NO: {gid}", f"GST REG: {gid}", gid,
                           f"GST @{rng.choice([6, 0])}%: RM{self._money(rng, False)}",
                           f"SR @ {rng.choice([6, 0])}%", "GST @6% INCLUDED IN TOTAL", "SR = 6%",
                           "ZR = 0%", f"SST @ {rng.choice([6, 10])}%"])

    def _r_address(self, rng: random.Random) -> str:
        n = rng.randint(1, 300)
        lot = rng.choice([f"NO. {n}", f"NO.{n}", f"LOT {n}", f"NO. {n}{rng.choice('ABG')}", f"{n}",
                          f"LOT {rng.randint(1000, 9999)}-{rng.choice('AB')}", f"NO. {n}-{rng.randint(1, 3)}",
                          f"NO. {n}G&{n + 2}G"])
        road = f"{rng.choice(_R_ROADS)} {rng.choice(_R_STREET)}" + (
            f" {rng.randint(1, 30)}" if rng.random() < 0.4 else f" {rng.randint(1, 30)}/{rng.randint(1, 30)}"
            if rng.random() < 0.3 else "")
        town = f"{rng.randrange(40000, 82000):05d} {rng.choice(_R_PLACES)}"
        r = rng.random()
        if r < 0.4:
            return f"{lot}, {road}," if rng.random() < 0.5 else f"{lot}, {road}"
        if r < 0.65:
            return town + rng.choice(["", ",", f", {rng.choice(_R_PLACES)}", ", MALAYSIA."])
        if r < 0.85:
            return road + rng.choice(["", ","])
        return f"{rng.choice(_R_PLACES)}" + rng.choice(["", ",", "."])

    def _r_docno(self, rng: random.Random) -> str:
        code = "".join(rng.choices(string.ascii_uppercase, k=rng.randint(0, 3))) + \
            f"{rng.randrange(10 ** rng.randint(4, 9)):0{rng.randint(4, 9)}d}"
        label = rng.choice(["INVOICE NO:", "INV NO.", "BILL NO:", "RECEIPT NO:", "RECEIPT #", "DOC NO:", "REF:",
                            "TRANS:", "SLIP NO.:", "ORDER NO:", "CHK", "TABLE", "TABLE NO:", "POS:", "TERMINAL:",
                            "COUNTER", "CASHIER:", "CASHIER", "OPERATOR", "STAFF:", "SALESPERSON:", "MEMBER NO:"])
        if label.startswith(("TABLE", "POS", "COUNTER", "TERMINAL")):
            return f"{label} {rng.randint(1, 60):0{rng.choice([1, 2])}d}"
        if label.startswith(("CASHIER", "OPERATOR", "STAFF", "SALES")):
            r = rng.random()
            return f"{label} {rng.choice(_R_NAMES)}" if r < 0.6 else f"{rng.randint(1, 999)} {label.rstrip(':')}" \
                if r < 0.8 else f"{label} {rng.choice(_R_NAMES)} - {rng.choice(_R_NAMES)}"
        return f"{label} {code}" if rng.random() < 0.8 else code

    def _receipt_columns(self, rng: random.Random) -> list[str]:
        """Columns of one receipt line (SROIE's mix: ~21% bare prices, ~8% integers, median 8 chars)."""
        r = rng.random()
        if r < 0.21:  # a price column
            return [self._money(rng)]
        if r < 0.28:  # a quantity or count column
            return [rng.choice([str(rng.choice([1, 1, 1, 2, 2, 3, 4, 5, 6, 8, 10, 12, 20, 100])), self._r_qty(rng)])]
        if r < 0.33:  # tax codes, currency and single marks
            return [rng.choice(_R_CODES)]
        if r < 0.48:  # a label, sometimes with its value
            label = rng.choice(_R_LABELS)
            if rng.random() < 0.3 and not label.startswith(("(", "GST SUMMARY", "TAX INVOICE", "QTY ITEM", "ITEM QTY")):
                value = self._r_date(rng).split(" ")[-1] if "DATE" in label or "TIME" in label else \
                    self._r_qty(rng) if "QTY" in label or "ITEMS" in label or rng.random() < 0.1 else self._money(rng)
                return [label, value]
            return [label]
        if r < 0.53:  # one word: an item, a heading, a name
            return [rng.choice([self._r_word(rng), rng.choice(_R_ITEMS).split()[0], rng.choice(_R_WORDS),
                                rng.choice(_R_PLACES).split()[0], rng.choice(_R_NAMES).split()[0]])]
        if r < 0.64:  # an item, maybe with its quantity, unit price, amount and tax code
            cols = [self._r_item(rng)]
            k = rng.random()
            if k < 0.25:
                cols.append(self._money(rng))
            elif k < 0.35:
                cols = [self._r_qty(rng)] + cols
            elif k < 0.42:
                cols += [self._r_qty(rng), self._money(rng, False), self._money(rng)]
            elif k < 0.48:
                cols[0] += f" @{self._money(rng, False)}"
            return cols
        if r < 0.7:  # quantity x unit price (amount)
            q = rng.choice([1, 1, 2, 2, 3, 4, 5, 6, 10, 12])
            sep = rng.choice(["X", "X", "x", "@", "PC @", "X @"])
            cols = [f"{q} {sep} {self._money(rng, False)}"]
            k = rng.random()
            if k < 0.3:
                cols.append(self._money(rng))
            elif k < 0.45:
                cols = [f"{q}{rng.choice(['X', ' X', 'x'])}", f"{rng.randrange(10 ** 12):012d}"]  # 1X 000001048211
            return cols
        if r < 0.72:  # table header
            return rng.sample(["QTY", "ITEM", "DESCRIPTION", "PRICE", "U.PRICE", "AMOUNT", "AMT(RM)", "TAX", "DISC",
                               "TOTAL", "CODE", "RM", "U/P", "S/PRICE", "TAX CODE", "NO"], rng.randint(2, 4))
        if r < 0.77:
            return [self._r_date(rng)]
        if r < 0.8:
            return [self._r_phone(rng)]
        if r < 0.845:
            return [self._r_company(rng)]
        if r < 0.87:
            return [self._r_gst(rng)]
        if r < 0.92:
            return [self._r_address(rng)]
        if r < 0.955:
            return [self._r_docno(rng)]
        if r < 0.98:  # footer text, often broken over lines
            words = rng.choice(_R_PHRASES).split()
            i = rng.randrange(len(words)) if rng.random() < 0.3 else 0
            j = rng.randint(i + 1, len(words)) if rng.random() < 0.4 else len(words)
            return [" ".join(words[i:j])]
        if r < 0.99:
            name = self._r_word(rng).lower()
            return [rng.choice([f"www.{name}.com.my", f"WWW.{name}.COM", f"{name}@gmail.com", f"{name}.com.my",
                                f"FB: {name}"])]
        return [rng.choice([f"{rng.randrange(10 ** 13):013d}", f"{rng.randrange(10 ** 12):012d}",
                            "".join(rng.choices(string.ascii_uppercase + string.digits, k=rng.randint(6, 14)))])]
