"""Stable codes for every diagnostic (``R008``) and what each one means, with an example.

``retouraanvraag rules explain-code R008`` prints an entry, ``make docs`` lists them all in
``docs/rule-codes.md``. A code never changes meaning once published: new kinds of problems get
new numbers, and a retired code stays reserved.
"""

from __future__ import annotations

from typing import Final

import attrs

__all__ = ["CODES", "Explanation", "explain_code", "find_code", "stable_code"]


@attrs.frozen
class Explanation:
    """One kind of diagnostic: its code, the message keys it covers, and what it means.

    Attributes:
        code: the stable code, ``R`` and three digits.
        slugs: the ``Diagnostic.code`` values it covers (the first is its name).
        severity: ``error`` or ``warning``.
        nl: the explanation in Dutch.
        en: the explanation in English.
        examples: per language (``nl``, ``en``), a text that gives this diagnostic and the
            same text put right; ``None`` where no short text can show it (the limits).
    """

    code: str
    slugs: tuple[str, ...]
    severity: str
    nl: str
    en: str
    examples: dict[str, tuple[str, str]] | None = None

    @property
    def slug(self) -> str:
        """The name of the kind of problem (``unknown-field``)."""
        return self.slugs[0]

    def text(self, language: str) -> str:
        """The explanation in ``language``."""
        return self.nl if language == "nl" else self.en


def _e(  # noqa: PLR0917 - a table row
    code: str,
    slugs: str | tuple[str, ...],
    severity: str,
    nl: str,
    en: str,
    nl_example: tuple[str, str] | None = None,
    en_example: tuple[str, str] | None = None,
) -> Explanation:
    examples = None
    if nl_example is not None and en_example is not None:
        examples = {"nl": nl_example, "en": en_example}
    return Explanation(
        code, (slugs,) if isinstance(slugs, str) else slugs, severity, nl, en, examples
    )


def _lines(*lines: str) -> str:
    return "\n".join(lines)


_APPROVE_NL = "DAN Goedkeuren met label"
_APPROVE_EN = "THEN Approve with label"
_REVIEW_NL = "DAN Retouraanvraag inschakelen"
_REVIEW_EN = "THEN Require review"

CODES: Final[tuple[Explanation, ...]] = (
    _e(
        "R001", "syntax", "error",
        "De regel is niet af, of staat niet in de volgorde ALS voorwaarde DAN actie. De melding"
        " zegt wat er stond en wat er had kunnen staan.",
        "The rule is incomplete, or not in the order IF condition THEN action. The message says"
        " what was there and what could have been.",
        ("ALS Van land IS NL DAN", f"ALS Van land IS NL {_APPROVE_NL}"),
        ("IF From country IS NL THEN", f"IF From country IS NL {_APPROVE_EN}"),
    ),
    _e(
        "R002", ("bad-character", "bad-characters"), "error",
        "Een teken dat in de regeltaal niets betekent, zoals ; of ~. Haal het weg, of zet tekst"
        " met zulke tekens tussen aanhalingstekens.",
        "A character that means nothing in the rule language, such as ; or ~. Remove it, or put"
        " text with such characters in quotes.",
        (f"ALS Van land IS NL; {_APPROVE_NL}", f"ALS Van land IS NL {_APPROVE_NL}"),
        (f"IF From country IS NL; {_APPROVE_EN}", f"IF From country IS NL {_APPROVE_EN}"),
    ),
    _e(
        "R003", "unterminated-string", "error",
        'Tekst tussen aanhalingstekens moet op dezelfde regel weer sluiten, met " of ” (of'
        " \u2019 na \u2018).",
        'Quoted text must close on the same line, with " or ” (or \u2019 after \u2018).',
        (f'ALS Artikelnaam BEVAT "cadeaubon {_APPROVE_NL}',
         f'ALS Artikelnaam BEVAT "cadeaubon" {_APPROVE_NL}'),
        (f'IF Item name CONTAINS "gift card {_APPROVE_EN}',
         f'IF Item name CONTAINS "gift card" {_APPROVE_EN}'),
    ),
    _e(
        "R004", "too-deep", "error",
        "Haakjes en NIET mogen hoogstens 32 niveaus diep genest worden. Schrijf de voorwaarde"
        " eenvoudiger of verdeel haar over meer regels.",
        "Parentheses and NOT may nest at most 32 levels deep. Write the condition more simply or"
        " spread it over more rules.",
    ),
    _e(
        "R005", "too-large", "error",
        "Een regelbestand mag hoogstens 1.000.000 tekens lang zijn.",
        "A rule file may be at most 1,000,000 characters long.",
    ),
    _e(
        "R006", "too-many-rules", "error",
        "Een bestand mag hoogstens 5.000 regels bevatten.",
        "A file may hold at most 5,000 rules.",
    ),
    _e(
        "R007", "too-many-comparisons", "error",
        "Eén regel mag hoogstens 1.000 vergelijkingen bevatten.",
        "One rule may hold at most 1,000 comparisons.",
    ),
    _e(
        "R008", "unknown-field", "error",
        "Er staat een veld dat niet bestaat. De melding noemt het veld dat er het meest op"
        " lijkt, of alle velden.",
        "The rule names a field that does not exist. The message names the closest field, or"
        " lists them all.",
        (f"ALS Van lnd IS NL {_APPROVE_NL}", f"ALS Van land IS NL {_APPROVE_NL}"),
        (f"IF From contry IS NL {_APPROVE_EN}", f"IF From country IS NL {_APPROVE_EN}"),
    ),
    _e(
        "R009", "unknown-action", "error",
        "Na DAN staat een actie die niet bestaat. De melding noemt de actie die er het meest op"
        " lijkt, of alle acties.",
        "After THEN stands an action that does not exist. The message names the closest action,"
        " or lists them all.",
        ("ALS Van land IS NL DAN Goedkeuren", f"ALS Van land IS NL {_APPROVE_NL}"),
        ("IF From country IS NL THEN Approve", f"IF From country IS NL {_APPROVE_EN}"),
    ),
    _e(
        "R010", "unknown-country", "error",
        "Een land wordt geschreven met zijn ISO-code (NL) of zijn Nederlandse of Engelse naam.",
        "A country is written as its ISO code (NL) or its Dutch or English name.",
        (f"ALS Van land IS Nederlnd {_APPROVE_NL}", f"ALS Van land IS Nederland {_APPROVE_NL}"),
        (f"IF From country IS Germny {_APPROVE_EN}", f"IF From country IS Germany {_APPROVE_EN}"),
    ),
    _e(
        "R011", "unknown-reason", "error",
        "Een retourreden wordt geschreven met haar code (too_small) of haar Nederlandse of"
        " Engelse naam uit de lijst van de winkel.",
        "A return reason is written as its code (too_small) or its Dutch or English label from"
        " the shop's list.",
        (f'ALS Retourreden IS "Te klien" {_APPROVE_NL}',
         f'ALS Retourreden IS "Te klein" {_APPROVE_NL}'),
        (f'IF Return reason IS "Too smal" {_APPROVE_EN}',
         f'IF Return reason IS "Too small" {_APPROVE_EN}'),
    ),
    _e(
        "R012", "unknown-choice", "error",
        "Dit veld kent een vaste lijst waarden; de melding noemt ze.",
        "This field has a fixed list of values; the message lists them.",
        (f"ALS Kanaal IS winkel {_APPROVE_NL}", f"ALS Kanaal IS portal {_APPROVE_NL}"),
        (f"IF Channel IS shop {_APPROVE_EN}", f"IF Channel IS portal {_APPROVE_EN}"),
    ),
    _e(
        "R013", "type-mismatch", "error",
        "De waarde past niet bij het soort veld: een bedrag bij een land, een land bij een"
        " bedrag, een woord bij ja of nee.",
        "The value does not fit the kind of field: an amount for a country, a country for an"
        " amount, a word for yes or no.",
        ("ALS Bestelwaarde IS Nederland DAN Retouraanvraag inschakelen",
         "ALS Bestelwaarde IS €50 DAN Retouraanvraag inschakelen"),
        ("IF Order value IS Germany THEN Require review",
         "IF Order value IS €50 THEN Require review"),
    ),
    _e(
        "R014", "bad-operator", "error",
        "Deze vergelijking past niet bij het veld: GROTER DAN bij een land, BEVAT bij een bedrag."
        " De melding noemt wat wel past.",
        "This comparison does not fit the field: GREATER THAN for a country, CONTAINS for an"
        " amount. The message says what fits.",
        (f"ALS Van land GROTER DAN Nederland {_APPROVE_NL}",
         f"ALS Van land IS Nederland {_APPROVE_NL}"),
        (f"IF From country GREATER THAN Germany {_APPROVE_EN}",
         f"IF From country IS Germany {_APPROVE_EN}"),
    ),
    _e(
        "R015", "one-value", "error",
        "GROTER DAN, KLEINER DAN, MINSTENS en HOOGSTENS vergelijken met één waarde, niet met een"
        " lijst.",
        "GREATER THAN, LESS THAN, AT LEAST and AT MOST compare with one value, not with a list.",
        (f"ALS Bestelwaarde > €10 OF €20 {_APPROVE_NL}", f"ALS Bestelwaarde > €10 {_APPROVE_NL}"),
        (f"IF Order value > €10 OR €20 {_APPROVE_EN}", f"IF Order value > €10 {_APPROVE_EN}"),
    ),
    _e(
        "R016", "wrong-language", "error",
        "Een bestand is in één taal: de eerste ALS of IF beslist. Een regel in de andere taal"
        " wordt één keer gemeld en niet verder gelezen.",
        "A file is in one language: its first IF or ALS decides. A rule in the other language is"
        " reported once and not read further.",
        (f"ALS Van land IS NL {_APPROVE_NL}\nIF From country IS BE {_APPROVE_EN}",
         f"ALS Van land IS NL {_APPROVE_NL}\nALS Van land IS BE {_APPROVE_NL}"),
        (f"IF From country IS NL {_APPROVE_EN}\nALS Van land IS BE {_APPROVE_NL}",
         f"IF From country IS NL {_APPROVE_EN}\nIF From country IS BE {_APPROVE_EN}"),
    ),
    _e(
        "R017", "too-many-problems", "error",
        "Er worden hoogstens 100 problemen gemeld; de laatste melding telt de rest. Los eerst"
        " deze op.",
        "At most 100 problems are reported; the last message counts the rest. Fix these first.",
    ),
    _e(
        "R018", "number-too-long", "error",
        "Een getal of bedrag mag hoogstens 30 cijfers hebben.",
        "A number or amount may have at most 30 digits.",
        (f"ALS Aantal IS {'9' * 31} {_APPROVE_NL}", f"ALS Aantal IS 99 {_APPROVE_NL}"),
        (f"IF Quantity IS {'9' * 31} {_APPROVE_EN}", f"IF Quantity IS 99 {_APPROVE_EN}"),
    ),
    _e(
        "R019", "bad-money", "error",
        "Een bedrag is een getal met een munt: €4,95, 4,95 €, 4.95 EUR, EUR 5, 5 euro of 5,-."
        " Een punt of komma tussen cijfers staat voor de centen of tussen groepen van drie"
        " cijfers; €4,9,5 wordt dus nooit als €495 gelezen.",
        "An amount is a number with a currency: €4.95, 4.95 €, 4.95 EUR, EUR 5, 5 euro or 5,-."
        " A point or comma between digits marks the cents or stands between groups of three"
        " digits, so €4,9,5 is never read as €495.",
        (f"ALS Bestelwaarde > €4,9,5 {_APPROVE_NL}", f"ALS Bestelwaarde > €4,95 {_APPROVE_NL}"),
        (f"IF Order value > €4,9,5 {_APPROVE_EN}", f"IF Order value > €4.95 {_APPROVE_EN}"),
    ),
    _e(
        "R020", "request-action-in-item-rule", "error",
        "De vervoerder en de retourtermijn gelden voor de hele aanvraag. Een regel die een"
        " artikelveld (Retourreden, SKU, …) gebruikt, geldt per artikel en kan ze niet zetten."
        " Retourkosten kunnen wel per artikel: de aanvraag betaalt de hoogste.",
        "The carrier and the return window belong to the whole request. A rule that uses an"
        " item field (Return reason, SKU, …) holds per item and cannot set them. A return fee"
        " can be set per item: the request pays the highest.",
        ("ALS Retourreden IS damaged DAN Verzenden met DHL",
         "ALS Van land IS NL DAN Verzenden met DHL"),
        ("IF Return reason IS damaged THEN Ship with DHL",
         "IF From country IS NL THEN Ship with DHL"),
    ),
    _e(
        "R021", "contradiction", "error",
        "Een regel neemt hoogstens één beslissing (goedkeuren, afwijzen, beoordelen, niet"
        " retourneerbaar).",
        "A rule takes at most one decision (approve, reject, review, not returnable).",
        (f"ALS Van land IS NL {_APPROVE_NL} EN Retouraanvraag inschakelen",
         f"ALS Van land IS NL {_APPROVE_NL}"),
        (f"IF From country IS NL {_APPROVE_EN} AND Require review",
         f"IF From country IS NL {_APPROVE_EN}"),
    ),
    _e(
        "R022", "duplicate-action", "error",
        "Dezelfde actie staat twee keer in één regel.",
        "The same action appears twice in one rule.",
        ("ALS Van land IS NL DAN Retourkosten terugbetalen EN Retourkosten terugbetalen",
         "ALS Van land IS NL DAN Retourkosten terugbetalen"),
        ("IF From country IS NL THEN Refund return fee AND Refund return fee",
         "IF From country IS NL THEN Refund return fee"),
    ),
    _e(
        "R023", "missing-argument", "error",
        'Deze actie heeft een waarde nodig: Afwijzen met reden "…", Retourkosten €2,00,'
        ' Verzenden met "…".',
        'This action needs a value: Reject with reason "…", Return fee €2.00, Ship with "…".',
        ("ALS Van land IS NL DAN Afwijzen met reden",
         'ALS Van land IS NL DAN Afwijzen met reden "Buiten de EU"'),
        ("IF From country IS NL THEN Reject with reason",
         'IF From country IS NL THEN Reject with reason "Outside the EU"'),
    ),
    _e(
        "R024", "unexpected-argument", "error",
        "Deze actie neemt geen waarde.",
        "This action takes no value.",
        (f'ALS Van land IS NL {_APPROVE_NL} "snel"', f"ALS Van land IS NL {_APPROVE_NL}"),
        (f'IF From country IS NL {_APPROVE_EN} "fast"', f"IF From country IS NL {_APPROVE_EN}"),
    ),
    _e(
        "R025", "empty-text", "error",
        "Tekst tussen aanhalingstekens mag niet leeg zijn.",
        "Quoted text must not be empty.",
        ('ALS Van land IS NL DAN Afwijzen met reden ""',
         'ALS Van land IS NL DAN Afwijzen met reden "Buiten de EU"'),
        ('IF From country IS NL THEN Reject with reason ""',
         'IF From country IS NL THEN Reject with reason "Outside the EU"'),
    ),
    _e(
        "R026", "text-too-long", "error",
        "Een reden, vervoerder of melding mag hoogstens 2.000 tekens lang zijn.",
        "A reason, carrier or message may be at most 2,000 characters long.",
    ),
    _e(
        "R027", "never-matches", "warning",
        "De voorwaarden van deze regel kunnen nooit tegelijk waar zijn, zoals Bestelwaarde > €50"
        " EN Bestelwaarde < €10. De regel laadt, maar doet nooit iets.",
        "This rule's conditions can never hold at once, such as Order value > €50 AND Order value"
        " < €10. The rule loads but never does anything.",
        (f"ALS Bestelwaarde > €50 EN Bestelwaarde < €10 {_APPROVE_NL}",
         f"ALS Bestelwaarde > €10 EN Bestelwaarde < €50 {_APPROVE_NL}"),
        (f"IF Order value > €50 AND Order value < €10 {_APPROVE_EN}",
         f"IF Order value > €10 AND Order value < €50 {_APPROVE_EN}"),
    ),
    _e(
        "R028", "always-overridden", "warning",
        "Regels lopen van boven naar beneden en per soort actie wint de laatste die geldt. Een"
        " latere regel geldt telkens als deze geldt en neemt dezelfde soort actie, dus deze"
        " regel doet nooit iets.",
        "Rules run top to bottom and per kind of action the last matching one wins. A later rule"
        " matches whenever this one does and takes the same kind of action, so this rule never"
        " does anything.",
        (_lines(f"ALS Van land IS NL {_APPROVE_NL}", f"ALS Van land IS NL OF BE {_REVIEW_NL}"),
         _lines(f"ALS Van land IS NL OF BE {_REVIEW_NL}", f"ALS Van land IS NL {_APPROVE_NL}")),
        (_lines(f"IF From country IS NL {_APPROVE_EN}",
                f"IF From country IS NL OR BE {_REVIEW_EN}"),
         _lines(f"IF From country IS NL OR BE {_REVIEW_EN}",
                f"IF From country IS NL {_APPROVE_EN}")),
    ),
    _e(
        "R029", "duplicate-name", "warning",
        "Twee regels hebben dezelfde naam; in de trace en de geschiedenis zijn ze dan niet uit"
        " elkaar te houden.",
        "Two rules have the same name; the trace and the history cannot tell them apart.",
        (_lines(f'REGEL "NL": ALS Van land IS NL {_APPROVE_NL}',
                f'REGEL "NL": ALS Van land IS BE {_APPROVE_NL}'),
         _lines(f'REGEL "NL": ALS Van land IS NL {_APPROVE_NL}',
                f'REGEL "BE": ALS Van land IS BE {_APPROVE_NL}')),
        (_lines(f'RULE "NL": IF From country IS NL {_APPROVE_EN}',
                f'RULE "NL": IF From country IS BE {_APPROVE_EN}'),
         _lines(f'RULE "NL": IF From country IS NL {_APPROVE_EN}',
                f'RULE "BE": IF From country IS BE {_APPROVE_EN}')),
    ),
    _e(
        "R030", "no-rules", "error",
        "Het bestand bevat geen regels.",
        "The file contains no rules.",
    ),
    _e(
        "R031", "no-condition", "error",
        "Een filter op de aanvragen heeft een voorwaarde nodig, zoals Van land IS Nederland.",
        "A filter on the requests needs a condition, such as From country IS Netherlands.",
    ),
    _e(
        "R032", "keyword-typo", "error",
        "Een woord lijkt op een sleutelwoord (ALS, DAN, EN, OF, NIET, REGEL; IF, THEN, AND, OR,"
        " NOT, RULE) en de regel klopt pas als het dat sleutelwoord is: waarschijnlijk een"
        " tikfout.",
        "A word looks like a keyword (IF, THEN, AND, OR, NOT, RULE; ALS, DAN, EN, OF, NIET,"
        " REGEL) and the rule only works if it is that keyword: probably a typo.",
        ("ALS Van land IS NL DNA Goedkeuren met label", f"ALS Van land IS NL {_APPROVE_NL}"),
        ("IF From country IS NL TEHN Approve with label", f"IF From country IS NL {_APPROVE_EN}"),
    ),
    _e(
        "R033", "missing-keyword", "error",
        "Een sleutelwoord ontbreekt: DAN tussen voorwaarde en actie, EN tussen twee acties, ALS"
        " aan het begin van een regel. Woorden lopen niet door over het einde van een regel, dus"
        " een actie op de volgende regel wordt nooit als waarde gelezen.",
        "A keyword is missing: THEN between condition and action, AND between two actions, IF"
        " at the start of a rule. Words do not run on past the end of a line, so an action on the"
        " next line is never read as a value.",
        ("ALS Van land IS NL\nGoedkeuren met label", f"ALS Van land IS NL\n{_APPROVE_NL}"),
        ("IF From country IS NL\nApprove with label", f"IF From country IS NL\n{_APPROVE_EN}"),
    ),
    _e(
        "R034", "unknown-operator", "error",
        "Deze vergelijking bestaat niet in de regeltaal. Gebruik = of IS, != of IS NIET, >=, <=,"
        " > of <, of de woorden GROTER DAN, KLEINER DAN, MINSTENS en HOOGSTENS.",
        "This comparison does not exist in the rule language. Use = or IS, != or IS NOT, >=, <=,"
        " > or <, or the words GREATER THAN, LESS THAN, AT LEAST and AT MOST.",
        (f"ALS Van land == NL {_APPROVE_NL}", f"ALS Van land = NL {_APPROVE_NL}"),
        (f"IF From country == NL {_APPROVE_EN}", f"IF From country = NL {_APPROVE_EN}"),
    ),
    _e(
        "R035", "not-utf8", "error",
        "Regelbestanden zijn tekst in UTF-8. Een bestand dat geen UTF-8 is, wordt als"
        " Windows-1252 gelezen; lukt ook dat niet, dan wijst de melding de eerste byte aan die"
        " niet te lezen is. Sla het bestand op als UTF-8 (in Kladblok: Opslaan als, Codering"
        " UTF-8).",
        "Rule files are text in UTF-8. A file that is not UTF-8 is read as Windows-1252; when"
        " that fails too, the message points at the first byte that cannot be read. Save the"
        " file as UTF-8 (in Notepad: Save as, Encoding UTF-8).",
    ),
    _e(
        "R036", "windows-1252", "warning",
        "Het bestand is geen UTF-8 en is als Windows-1252 gelezen, zoals oude versies van"
        " Kladblok en Excel opslaan. Dat gaat meestal goed; sla het bestand op als UTF-8 om zeker"
        " te zijn.",
        "The file is not UTF-8 and was read as Windows-1252, as old versions of Notepad and"
        " Excel save. That usually works; save the file as UTF-8 to be sure.",
    ),
    _e(
        "R037", "ambiguous-separator", "error",
        "In €1.000 of €1,000 kan het scheidingsteken duizendtallen scheiden (duizend euro) of de"
        " centen (één euro). Schrijf €1000 of €1.000,00, dan is het duidelijk.",
        "In €1.000 or €1,000 the separator may group thousands (a thousand euros) or mark the"
        " cents (one euro). Write €1000 or €1,000.00 to make it clear.",
        (f"ALS Bestelwaarde > €1.000 {_APPROVE_NL}", f"ALS Bestelwaarde > €1.000,00 {_APPROVE_NL}"),
        (f"IF Order value > €1,000 {_APPROVE_EN}", f"IF Order value > €1,000.00 {_APPROVE_EN}"),
    ),
    _e(
        "R038", "dollar-sign", "error",
        "Het teken $ staat voor veel munten (Amerikaanse, Canadese, Australische dollar, …)."
        " Schrijf de ISO-code: 100 USD, 100 CAD.",
        "The sign $ stands for many currencies (US, Canadian, Australian dollar, …). Write the"
        " ISO code: 100 USD, 100 CAD.",
        (f"ALS Bestelwaarde > $100 {_APPROVE_NL}", f"ALS Bestelwaarde > 100 USD {_APPROVE_NL}"),
        (f"IF Order value > $100 {_APPROVE_EN}", f"IF Order value > 100 USD {_APPROVE_EN}"),
    ),
    _e(
        "R039", "other-currency", "warning",
        "Een bedrag in een andere munt dan die van de winkel is nooit gelijk aan, groter of"
        " kleiner dan een bedrag van de winkel: de vergelijking is onbekend en geldt dus nooit.",
        "An amount in another currency than the shop's is never equal to, greater or less than"
        " an amount of the shop: the comparison is unknown, so it never holds.",
        (f"ALS Bestelwaarde > 100 USD {_APPROVE_NL}", f"ALS Bestelwaarde > 100 EUR {_APPROVE_NL}"),
        (f"IF Order value > 100 USD {_APPROVE_EN}", f"IF Order value > 100 EUR {_APPROVE_EN}"),
    ),
    _e(
        "R040", "bad-number", "error",
        "Een punt of komma tussen cijfers staat voor de decimalen of tussen groepen van drie"
        " cijfers; 4,95,00 is dus geen getal.",
        "A point or comma between digits marks the decimals or stands between groups of three"
        " digits, so 4,95,00 is not a number.",
        (f"ALS Aantal > 4,95,00 {_APPROVE_NL}", f"ALS Aantal > 4,95 {_APPROVE_NL}"),
        (f"IF Quantity > 4,95,00 {_APPROVE_EN}", f"IF Quantity > 4.95 {_APPROVE_EN}"),
    ),
    _e(
        "R041", "mixed-and-or", "warning",
        "EN gaat voor OF: A EN B OF C betekent (A EN B) OF C. Zonder haakjes leest dat makkelijk"
        " verkeerd; zet haakjes om wat bij elkaar hoort. (Een OF tussen waarden, zoals IS NL OF"
        " BE, telt niet.)",
        "AND goes before OR: A AND B OR C means (A AND B) OR C. Without parentheses that is easily"
        " misread; put parentheses around what belongs together. (An OR between values, as in"
        " IS NL OR BE, does not count.)",
        (f"ALS Van land IS NL EN Kanaal IS api OF Aantal > 2 {_APPROVE_NL}",
         f"ALS (Van land IS NL EN Kanaal IS api) OF Aantal > 2 {_APPROVE_NL}"),
        (f"IF From country IS NL AND Channel IS api OR Quantity > 2 {_APPROVE_EN}",
         f"IF (From country IS NL AND Channel IS api) OR Quantity > 2 {_APPROVE_EN}"),
    ),
    _e(
        "R042", "undoes-not-returnable", "warning",
        "De laatste regel die geldt, beslist. Een latere regel die een beslissing neemt, maakt"
        " een eerdere Artikel niet retourneerbaar of Retour niet mogelijk ongedaan voor de"
        " artikelen waarvoor ze allebei gelden. Zet de weigering onder de andere regel als het"
        " artikel niet retourneerbaar moet blijven.",
        "The last matching rule decides. A later rule that takes a decision undoes an earlier"
        " Unable to return item or Unable to return order for the items both match. Put the"
        " refusal below the other rule if the item must stay unreturnable.",
        (_lines('ALS SKU BEGINT MET "HYG" DAN Artikel niet retourneerbaar',
                f"ALS Van land IS NL {_APPROVE_NL}"),
         _lines(f"ALS Van land IS NL {_APPROVE_NL}",
                'ALS SKU BEGINT MET "HYG" DAN Artikel niet retourneerbaar')),
        (_lines('IF SKU STARTS WITH "HYG" THEN Unable to return item',
                f"IF From country IS NL {_APPROVE_EN}"),
         _lines(f"IF From country IS NL {_APPROVE_EN}",
                'IF SKU STARTS WITH "HYG" THEN Unable to return item')),
    ),
    _e(
        "R043", "bad-date", "error",
        "Een datum schrijft u als jaar-maand-dag (2026-11-01) of dag-maand-jaar (1-11-2026),"
        " en hij moet bestaan: 2026-02-30 bestaat niet.",
        "A date is written year-month-day (2026-11-01) or day-month-year (1-11-2026), and it"
        " must exist: 2026-02-30 does not.",
        (f"ALS Besteldatum VOOR 2026-02-30 {_APPROVE_NL}",
         f"ALS Besteldatum VOOR 2026-03-01 {_APPROVE_NL}"),
        (f"IF Order date BEFORE 2026-02-30 {_APPROVE_EN}",
         f"IF Order date BEFORE 2026-03-01 {_APPROVE_EN}"),
    ),
    _e(
        "R044", "bad-window", "error",
        "Retourtermijn geeft het aantal dagen na levering waarin de klant kan retourneren: een"
        " heel getal van 0 tot 3650, gevolgd door dagen.",
        "Return window gives the number of days after delivery in which the customer may return:"
        " a whole number from 0 to 3650, followed by days.",
        ("ALS Van land IS BE DAN Retourtermijn 2,5 dagen",
         "ALS Van land IS BE DAN Retourtermijn 60 dagen"),
        ("IF From country IS BE THEN Return window 2.5 days",
         "IF From country IS BE THEN Return window 60 days"),
    ),
    _e(
        "R045", "fee-other-currency", "warning",
        "Retourkosten in een andere munt dan die van de winkel kan alleen een bestelling in die"
        " munt betalen: voor elke andere bestelling weigert de balie de aanvraag. Schrijf de"
        " kosten in de munt van de winkel, of laat de regel alleen zulke bestellingen treffen.",
        "A return fee in another currency than the shop's can only be paid by an order in that"
        " currency: the desk refuses the request for any other order. Write the fee in the"
        " shop's currency, or make the rule match only such orders.",
        ("ALS Van land IS BE DAN Retourkosten 5 USD", "ALS Van land IS BE DAN Retourkosten €5"),
        ("IF From country IS BE THEN Return fee 5 USD", "IF From country IS BE THEN Return fee €5"),
    ),
)  # fmt: skip

_BY_SLUG: Final = {slug: entry for entry in CODES for slug in entry.slugs}
_BY_CODE: Final = {entry.code: entry for entry in CODES}


def stable_code(slug: str) -> str | None:
    """The stable code (``R008``) of a diagnostic's ``code`` (``unknown-field``), if any."""
    entry = _BY_SLUG.get(slug)
    return entry.code if entry is not None else None


def find_code(name: str) -> Explanation | None:
    """The entry for ``R008``, ``r8`` or ``unknown-field``; ``None`` when there is none."""
    text = name.strip()
    if text[:1] in {"R", "r"} and text[1:].isdigit():
        return _BY_CODE.get(f"R{int(text[1:]):03d}")
    return _BY_SLUG.get(text.casefold())


_HEADINGS: Final = {
    "nl": ("fout", "waarschuwing", "Bijvoorbeeld:", "Zo is het goed:"),
    "en": ("error", "warning", "For example:", "Put right:"),
}


def explain_code(entry: Explanation, language: str) -> str:
    """The explanation of one code, with its example, as ``rules explain-code`` prints it."""
    error, warning, example, fixed = _HEADINGS["nl" if language == "nl" else "en"]
    severity = error if entry.severity == "error" else warning
    lines = [f"{entry.code} ({entry.slug}, {severity})", "", *_wrap(entry.text(language))]
    if entry.examples is not None:
        wrong, right = entry.examples["nl" if language == "nl" else "en"]
        lines += ["", example, *_indent(wrong), "", fixed, *_indent(right)]
    return "\n".join(lines) + "\n"


def _indent(text: str) -> list[str]:
    return [f"    {line}" for line in text.splitlines()]


def _wrap(text: str, width: int = 88) -> list[str]:
    lines: list[str] = []
    current = ""
    for piece in text.split():
        if current and len(current) + 1 + len(piece) > width:
            lines.append(current)
            current = piece
        else:
            current = f"{current} {piece}" if current else piece
    if current:
        lines.append(current)
    return lines
