"""Every message the rules language shows, in Dutch and English (one table, one place)."""

from __future__ import annotations

from typing import Final

MESSAGES: Final[dict[str, tuple[str, str]]] = {
    "syntax": ("onverwacht {found}", "unexpected {found}"),
    "expected": ("verwacht {expected}", "expected {expected}"),
    "bad-character": ("onverwacht teken {text}", "unexpected character {text}"),
    "bad-characters": ("onverwachte tekens {text}", "unexpected characters {text}"),
    "unterminated-string": (
        "tekst zonder sluitend aanhalingsteken",
        "text without a closing quote",
    ),
    "unterminated-hint": ("sluit de tekst af met {quote}", "end the text with {quote}"),
    "keyword-typo": ('onverwacht "{text}"', 'unexpected "{text}"'),
    "missing-keyword": (
        '{keyword} ontbreekt vóór "{text}"',
        '{keyword} is missing before "{text}"',
    ),
    "missing-keyword-hint": ('schrijf "{keyword} {text}"', 'write "{keyword} {text}"'),
    "unknown-operator": ('onbekende operator "{text}"', 'unknown operator "{text}"'),
    "comma-hint": (
        "een komma scheidt waarden; gebruik EN of OF tussen voorwaarden",
        "a comma separates values; use AND or OR between conditions",
    ),
    "not-utf8": (
        "het bestand is niet in UTF-8 opgeslagen en ook niet als Windows-1252 te lezen",
        "the file is not saved as UTF-8 and cannot be read as Windows-1252 either",
    ),
    "windows-1252": (
        "het bestand is niet in UTF-8 opgeslagen; het is gelezen als Windows-1252",
        "the file is not saved as UTF-8; it was read as Windows-1252",
    ),
    "utf8-hint": ("sla het bestand op als UTF-8", "save the file as UTF-8"),
    "too-deep": (
        "te diep genest: hoogstens {limit} niveaus haakjes of NIET",
        "nested too deeply: at most {limit} levels of parentheses or NOT",
    ),
    "too-large": (
        "het bestand is te groot: {size} tekens, hoogstens {limit}",
        "the file is too large: {size} characters, at most {limit}",
    ),
    "too-many-rules": (
        "te veel regels: {count}, hoogstens {limit}",
        "too many rules: {count}, at most {limit}",
    ),
    "too-many-comparisons": (
        "te veel vergelijkingen in één regel: {count}, hoogstens {limit}",
        "too many comparisons in one rule: {count}, at most {limit}",
    ),
    "unknown-field": ('onbekend veld "{text}"', 'unknown field "{text}"'),
    "unknown-action": ('onbekende actie "{text}"', 'unknown action "{text}"'),
    "unknown-country": ('onbekend land "{text}"', 'unknown country "{text}"'),
    "unknown-reason": ('onbekende retourreden "{text}"', 'unknown return reason "{text}"'),
    "unknown-choice": ('"{text}" is geen waarde van {field}', '"{text}" is not a value of {field}'),
    "choose-from": ("kies uit: {choices}", "choose from: {choices}"),
    "did-you-mean": ('bedoelde u "{suggestion}"?', 'did you mean "{suggestion}"?'),
    "known-fields": ("bekende velden: {names}", "known fields: {names}"),
    "known-actions": ("bekende acties: {names}", "known actions: {names}"),
    "type-mismatch": (
        '{field} is {type}; "{text}" is dat niet',
        '{field} is {type}; "{text}" is not',
    ),
    "bad-operator": (
        "{operator} past niet bij {field} ({type})",
        "{operator} does not fit {field} ({type})",
    ),
    "use-operators": ("gebruik {operators}", "use {operators}"),
    "one-value": (
        "{operator} vergelijkt met één waarde, niet met {count}",
        "{operator} compares with one value, not {count}",
    ),
    "wrong-language": (
        "een regel in het Engels ({text}) in een Nederlands bestand: een bestand is in één taal",
        "a rule in Dutch ({text}) in an English file: a file is in one language",
    ),
    "wrong-language-hint": (
        "schrijf deze regel als ALS … DAN …",
        "write this rule as IF … THEN …",
    ),
    "too-many-problems": (
        "en nog {count} problemen; los eerst deze op",
        "and {count} more problems; fix these first",
    ),
    "number-too-long": (
        "dit getal is te lang: hoogstens {limit} cijfers",
        "this number is too long: at most {limit} digits",
    ),
    "bad-money": ('"{text}" is geen bedrag', '"{text}" is not an amount'),
    "money-hint": ("schrijf bijvoorbeeld €4,95 of 4.95 EUR", "write for example €4.95 or 4.95 EUR"),
    "money-groups-hint": (
        (
            "een punt of komma tussen cijfers staat voor de centen of tussen groepen van drie"
            " cijfers: €4,95 of €1.234,50"
        ),
        (
            "a point or comma between digits marks the cents or stands between groups of three"
            " digits: €4.95 or €1,234.50"
        ),
    ),
    "bad-number": ('"{text}" is geen getal', '"{text}" is not a number'),
    "bad-window": (
        "{action} wil een aantal dagen, van 0 tot {limit}: {action} 60 dagen",
        "{action} wants a number of days, from 0 to {limit}: {action} 60 days",
    ),
    "bad-date": (
        '"{text}" is geen bestaande datum (jaar-maand-dag, zoals 2026-11-01)',
        '"{text}" is not a date that exists (year-month-day, such as 2026-11-01)',
    ),
    "number-hint": (
        (
            "een punt of komma tussen cijfers staat voor de decimalen of tussen groepen van drie"
            " cijfers: 2,5 of 1.250.000"
        ),
        (
            "a point or comma between digits marks the decimals or stands between groups of three"
            " digits: 2.5 or 1,250,000"
        ),
    ),
    "ambiguous-separator": (
        (
            '"{text}" is dubbelzinnig: scheidt de "{separator}" duizendtallen, of staan er'
            " decimalen achter?"
        ),
        (
            '"{text}" is ambiguous: does the "{separator}" separate thousands, or are decimals'
            " behind it?"
        ),
    ),
    "ambiguous-hint": ("schrijf {plain} of {full}", "write {plain} or {full}"),
    "dollar-sign": (
        '"{text}": het teken $ staat voor meer dan één munt (USD, CAD, AUD, …)',
        '"{text}": the sign $ stands for more than one currency (USD, CAD, AUD, …)',
    ),
    "dollar-hint": (
        "schrijf de code van de munt, bijvoorbeeld {example}",
        "write the currency's code, for example {example}",
    ),
    "other-currency": (
        '"{text}" is in {currency}, maar de winkel rekent in {shop}: deze vergelijking geldt nooit',
        '"{text}" is in {currency}, but the shop charges in {shop}: this comparison never holds',
    ),
    "other-currency-hint": ("schrijf het bedrag in {shop}", "write the amount in {shop}"),
    "fee-other-currency": (
        (
            '"{text}" is in {currency}, maar de winkel rekent in {shop}: alleen een bestelling'
            " in {currency} kan deze retourkosten betalen"
        ),
        (
            '"{text}" is in {currency}, but the shop charges in {shop}: only an order in'
            " {currency} can pay this return fee"
        ),
    ),
    "yes-no-hint": ("gebruik ja of nee", "use yes or no"),
    "request-action-in-item-rule": (
        "{action} hoort bij de hele aanvraag, maar deze regel gebruikt het artikelveld {field}",
        "{action} belongs to the whole request, but this rule uses the item field {field}",
    ),
    "request-action-hint": (
        "zet {action} in een regel zonder artikelvelden",
        "put {action} in a rule without item fields",
    ),
    "contradiction": (
        "{first} en {second} spreken elkaar tegen in één regel",
        "{first} and {second} contradict each other in one rule",
    ),
    "contradiction-hint": (
        "een regel neemt hoogstens één beslissing",
        "a rule takes at most one decision",
    ),
    "duplicate-action": (
        "{action} staat twee keer in deze regel",
        "{action} appears twice in this rule",
    ),
    "missing-argument": ("{action} heeft {argument} nodig", "{action} needs {argument}"),
    "unexpected-argument": ("{action} neemt geen waarde", "{action} takes no value"),
    "empty-text": ("de tekst mag niet leeg zijn", "the text must not be empty"),
    "text-too-long": (
        "de tekst is te lang: hoogstens {limit} tekens",
        "the text is too long: at most {limit} characters",
    ),
    "never-matches": (
        "deze regel kan nooit gelden: {field} kan niet tegelijk aan al deze voorwaarden voldoen",
        "this rule can never match: {field} cannot meet all these conditions at once",
    ),
    "always-overridden": (
        "deze regel wordt altijd overschreven door {other}",
        "this rule is always overridden by {other}",
    ),
    "overridden-hint": (
        "{other} geldt telkens als deze regel geldt en neemt dezelfde soort actie",
        "{other} matches whenever this rule does and takes the same kind of action",
    ),
    "mixed-and-or": (
        "EN en OF staan hier door elkaar zonder haakjes",
        "AND and OR are mixed here without parentheses",
    ),
    "mixed-and-or-hint": (
        "EN gaat voor OF: A EN B OF C betekent (A EN B) OF C; zet haakjes om wat bij elkaar hoort",
        (
            "AND goes before OR: A AND B OR C means (A AND B) OR C; put parentheses around what"
            " belongs together"
        ),
    ),
    "undoes-not-returnable": (
        'voor een artikel waarvoor ook {other} geldt, maakt deze regel "{action}" ongedaan',
        'for an item {other} also matches, this rule undoes "{action}"',
    ),
    "undoes-not-returnable-hint": (
        (
            "de laatste regel die geldt beslist; zet {other} onder deze regel als het artikel"
            " niet retourneerbaar moet blijven"
        ),
        (
            "the last matching rule decides; put {other} below this rule if the item must stay"
            " unreturnable"
        ),
    ),
    "duplicate-name": (
        'twee regels heten "{name}" (ook regel {other})',
        'two rules are called "{name}" (also rule {other})',
    ),
    "no-rules": ("het bestand bevat geen regels", "the file contains no rules"),
    "no-condition": ("er staat geen voorwaarde", "there is no condition"),
}

#: How expected tokens are described in "verwacht …" hints.
TOKEN_WORDS: Final[dict[str, tuple[str, str]]] = {
    "OFF": ("UIT", "OFF"),
    "RULE": ("REGEL", "RULE"),
    "IF": ("ALS", "IF"),
    "THEN": ("DAN", "THEN"),
    "AND": ("EN", "AND"),
    "OR": ("OF", "OR"),
    "VALUE_OR": ("OF", "OR"),
    "NOT": ("NIET", "NOT"),
    "LPAR": ("(", "("),
    "RPAR": (")", ")"),
    "COLON": (":", ":"),
    "STRING": ("tekst tussen aanhalingstekens", "quoted text"),
    "NUMBER": ("een getal", "a number"),
    "MONEY": ("een bedrag", "an amount"),
    "WORD": ("een woord", "a word"),
    "UNIT": ("dagen", "days"),
    "$END": ("einde van de regel", "end of the rule"),
    "OPERATOR": (
        "een operator (IS, IS NIET, BEVAT, BEGINT MET, GROTER DAN, >, <, …)",
        "an operator (IS, IS NOT, CONTAINS, STARTS WITH, GREATER THAN, >, <, …)",
    ),
    "VALUE": ("een waarde", "a value"),
    "FIELD": ("een veld", "a field"),
    "ACTION": ("een actie", "an action"),
}

#: Field types in words, for "Bestelwaarde is een bedrag".
TYPE_WORDS: Final[dict[str, tuple[str, str]]] = {
    "country": ("een land", "a country"),
    "money": ("een bedrag", "an amount"),
    "number": ("een getal", "a number"),
    "text": ("tekst", "text"),
    "reason": ("een retourreden", "a return reason"),
    "choice": ("een keuze", "a choice"),
    "yes_no": ("ja of nee", "yes or no"),
    "tags": ("een verzameling tags", "a set of tags"),
    "date": ("een datum", "a date"),
}

#: Operators in words, per language.
OPERATOR_WORDS: Final[dict[str, tuple[str, str]]] = {
    "IS": ("IS", "IS"),
    "IS_NOT": ("IS NIET", "IS NOT"),
    "CONTAINS": ("BEVAT", "CONTAINS"),
    "NOT_CONTAINS": ("BEVAT NIET", "DOES NOT CONTAIN"),
    "STARTS_WITH": ("BEGINT MET", "STARTS WITH"),
    "GT": (">", ">"),
    "GE": (">=", ">="),
    "LT": ("<", "<"),
    "LE": ("<=", "<="),
}

#: Words of the explain report and trace.
REPORT_WORDS: Final[dict[str, tuple[str, str]]] = {
    "overridden": ("overschreven door {other}", "overridden by {other}"),
    "items": ("artikel", "item"),
    "true": ("waar", "true"),
    "false": ("onwaar", "false"),
    "unknown": ("onbekend", "unknown"),
    "matches": ("geldt", "matches"),
    "no-match": ("geldt niet", "does not match"),
    "result": ("Uitkomst", "Outcome"),
    "no-decision": (
        "geen beslissing door de regels: het standaardbeleid beslist",
        "no decision by the rules: the policy default applies",
    ),
    "decision": ("beslissing", "decision"),
    "by": ("door", "by"),
    "reason": ("reden", "reason"),
    "fee": ("retourkosten", "return fee"),
    "carrier": ("vervoerder", "carrier"),
    "window": ("retourtermijn", "return window"),
    "days": ("{days} dagen", "{days} days"),
    "refund": ("retourkosten terugbetalen", "refund return fee"),
    "refused": ("niet retourneerbaar", "not returnable"),
    "order": ("bestelling", "order"),
    "yes": ("ja", "yes"),
    "no": ("nee", "no"),
    "request": ("aanvraag", "request"),
    "switched-off": ("uitgeschakeld", "switched off"),
}

DECISION_WORDS: Final[dict[str, tuple[str, str]]] = {
    "not_returnable": ("niet retourneerbaar", "not returnable"),
    "reject": ("afwijzen", "reject"),
    "review": ("beoordelen", "review"),
    "approve_with_label": ("goedkeuren met label", "approve with label"),
    "approve_without_label": ("goedkeuren zonder label", "approve without label"),
}

REFUSAL_MESSAGES: Final[dict[str, tuple[str, str]]] = {
    "item": (
        "Dit artikel kan niet worden geretourneerd.",
        "This item cannot be returned.",
    ),
    "order": (
        "Deze bestelling kan niet worden geretourneerd.",
        "This order cannot be returned.",
    ),
}


#: The severities in words, as a diagnostic prints them.
SEVERITY_WORDS: Final[dict[str, tuple[str, str]]] = {
    "error": ("fout", "error"),
    "warning": ("waarschuwing", "warning"),
}

#: Words that are counted in summaries: (singular, plural) per language.
COUNTED_WORDS: Final[dict[str, tuple[tuple[str, str], tuple[str, str]]]] = {
    "error": (("fout", "fouten"), ("error", "errors")),
    "warning": (("waarschuwing", "waarschuwingen"), ("warning", "warnings")),
    "rule": (("regel", "regels"), ("rule", "rules")),
}


def count(number: int, key: str, language: str) -> str:
    """``1 fout``, ``2 fouten``, ``geen fouten`` (and in English: ``no errors``)."""
    nl, en = COUNTED_WORDS[key]
    singular, plural = nl if language == "nl" else en
    if number == 0:
        return f"{'geen' if language == 'nl' else 'no'} {plural}"
    return f"{number} {singular if number == 1 else plural}"


def summary(errors: int, warnings: int, language: str) -> str:
    """The last line of a failed check: ``2 fouten, 1 waarschuwing`` / ``1 error``."""
    counted = count(errors, "error", language)
    return f"{counted}, {count(warnings, 'warning', language)}" if warnings else counted


def message(key: str, language: str, **values: object) -> str:
    """The message ``key`` in ``language``, filled in."""
    nl, en = MESSAGES[key]
    return (nl if language == "nl" else en).format(**values)


def word(table: dict[str, tuple[str, str]], key: str, language: str) -> str:
    """A word from one of the tables in ``language``."""
    nl, en = table[key]
    return nl if language == "nl" else en
