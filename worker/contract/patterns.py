"""The contract's string patterns in a form every JSON Schema validator reads the same way.

The worker checks usernames with Cognito's own pattern, ``[\\p{L}\\p{M}\\p{S}\\p{N}\\p{P}]+``, in
pydantic's Rust regex engine. Python's ``re`` (python-jsonschema) has no ``\\p{...}``, and ``\\w``,
``\\s`` and ``$`` mean different things in Rust, Python and JavaScript (ajv). The published schema
therefore spells each class out as code point ranges, derived from the worker's own check, and
ends with ``(?![\\s\\S])`` (the end of the text: Python's ``$`` also matches before a final
newline). ``tests/unit/test_schema.py`` checks every code point against the worker.

Regenerate after a Unicode or pydantic upgrade:
``python -m worker.contract.patterns > /tmp/ranges.py``.
"""

from __future__ import annotations

from typing import Annotated

from pydantic import StringConstraints, TypeAdapter, ValidationError

COGNITO_NAME = r"^[\p{L}\p{M}\p{S}\p{N}\p{P}]+$"
# Printable characters: Cognito's name classes and the space (Python's str.isprintable).
JOB_ID = r"^[\p{L}\p{M}\p{S}\p{N}\p{P} ]+$"
WORD_OR_PLUS = r"^[\w+]+$"
NO_WHITE_SPACE = r"^\S+$"
BATCH_LABEL = r"^[A-Za-z0-9._:-]+$"
BASE64 = r"^[A-Za-z0-9+/=]+$"

_SURROGATES = range(0xD800, 0xE000)


def derive_ranges(pattern: str) -> list[tuple[int, int]]:
    """The code points the worker's check of ``^[class]+$`` accepts, as inclusive ranges."""
    adapter: TypeAdapter[str] = TypeAdapter(Annotated[str, StringConstraints(pattern=pattern)])
    ranges: list[tuple[int, int]] = []
    start: int | None = None
    for code_point in range(0x110001):
        accepted = False
        if code_point <= 0x10FFFF and code_point not in _SURROGATES:
            try:
                adapter.validate_python(chr(code_point))
                accepted = True
            except ValidationError:
                pass
        if accepted and start is None:
            start = code_point
        elif not accepted and start is not None:
            ranges.append((start, code_point - 1))
            start = None
    return ranges


def portable(ranges: list[tuple[int, int]]) -> str:
    """``^[ranges]+`` to the end of the text, readable by Python ``re`` and JavaScript (``u``)."""
    parts = []
    for first, last in ranges:
        parts.append(_char(first) if first == last else f"{_char(first)}-{_char(last)}")
    return "^[" + "".join(parts) + r"]+(?![\s\S])"


def _char(code_point: int) -> str:
    # BMP: an escape both engines read. Beyond it there is no common escape (Python \U0001F600,
    # JavaScript \u{1F600}), so the character itself: one code point to both (ajv uses "u").
    return f"\\u{code_point:04x}" if code_point <= 0xFFFF else chr(code_point)


def _parse(text: str) -> list[tuple[int, int]]:
    return [
        (int(first, 16), int(last, 16))
        for first, _, last in (token.partition("-") for token in text.split())
    ]


def portable_patterns() -> dict[str, tuple[str, str]]:
    """The worker's pattern -> (a name for it, the published pattern)."""
    return {
        COGNITO_NAME: ("CognitoName", portable(_parse(_COGNITO_NAME_RANGES))),
        JOB_ID: ("JobId", portable(job_id_ranges())),
        WORD_OR_PLUS: ("WordOrPlus", portable(_parse(_WORD_OR_PLUS_RANGES))),
        NO_WHITE_SPACE: ("NoWhiteSpace", portable(_parse(_NO_WHITE_SPACE_RANGES))),
        BATCH_LABEL: ("BatchLabel", portable(derive_ascii(BATCH_LABEL))),
        BASE64: ("Base64", portable(derive_ascii(BASE64))),
    }


def job_id_ranges() -> list[tuple[int, int]]:
    """The code points of :data:`JOB_ID`: those of a Cognito name, and the space."""
    first, last = _parse(_COGNITO_NAME_RANGES)[0]
    assert first == 0x21  # the space joins the first range
    return [(0x20, last), *_parse(_COGNITO_NAME_RANGES)[1:]]


def derive_ascii(pattern: str) -> list[tuple[int, int]]:
    """:func:`derive_ranges` for an ASCII-only class (cheap enough to run every time)."""
    adapter: TypeAdapter[str] = TypeAdapter(Annotated[str, StringConstraints(pattern=pattern)])
    accepted = []
    for code_point in range(128):
        try:
            adapter.validate_python(chr(code_point))
            accepted.append(code_point)
        except ValidationError:
            pass
    ranges: list[tuple[int, int]] = []
    for code_point in accepted:
        if ranges and ranges[-1][1] == code_point - 1:
            ranges[-1] = (ranges[-1][0], code_point)
        else:
            ranges.append((code_point, code_point))
    return ranges


def render(name: str, ranges: list[tuple[int, int]]) -> str:
    """Python source of a ranges constant, wrapped to the line length."""
    tokens = [f"{first:x}-{last:x}" for first, last in ranges]
    lines, line = [], ""
    for token in tokens:
        if len(line) + len(token) + 1 > 90:
            lines.append(line)
            line = ""
        line += token + " "
    lines.append(line)
    body = "\n".join(f'    "{text}"' for text in lines)
    return f"{name} = (\n{body}\n)\n"


if __name__ == "__main__":
    for constant, source in (
        ("_COGNITO_NAME_RANGES", COGNITO_NAME),
        ("_WORD_OR_PLUS_RANGES", WORD_OR_PLUS),
        ("_NO_WHITE_SPACE_RANGES", NO_WHITE_SPACE),
    ):
        print(render(constant, derive_ranges(source)))

# Generated by ``python -m worker.contract.patterns`` from pydantic-core 2.50.5's regex engine.

_COGNITO_NAME_RANGES = (
    "21-7e a1-ac ae-377 37a-37f 384-38a 38c-38c 38e-3a1 3a3-52f 531-556 559-58a 58d-58f "
    "591-5c7 5d0-5ea 5ef-5f4 606-61b 61d-6dc 6de-70d 710-74a 74d-7b1 7c0-7fa 7fd-82d 830-83e "
    "840-85b 85e-85e 860-86a 870-88e 897-8e1 8e3-983 985-98c 98f-990 993-9a8 9aa-9b0 9b2-9b2 "
    "9b6-9b9 9bc-9c4 9c7-9c8 9cb-9ce 9d7-9d7 9dc-9dd 9df-9e3 9e6-9fe a01-a03 a05-a0a a0f-a10 "
    "a13-a28 a2a-a30 a32-a33 a35-a36 a38-a39 a3c-a3c a3e-a42 a47-a48 a4b-a4d a51-a51 a59-a5c "
    "a5e-a5e a66-a76 a81-a83 a85-a8d a8f-a91 a93-aa8 aaa-ab0 ab2-ab3 ab5-ab9 abc-ac5 ac7-ac9 "
    "acb-acd ad0-ad0 ae0-ae3 ae6-af1 af9-aff b01-b03 b05-b0c b0f-b10 b13-b28 b2a-b30 b32-b33 "
    "b35-b39 b3c-b44 b47-b48 b4b-b4d b55-b57 b5c-b5d b5f-b63 b66-b77 b82-b83 b85-b8a b8e-b90 "
    "b92-b95 b99-b9a b9c-b9c b9e-b9f ba3-ba4 ba8-baa bae-bb9 bbe-bc2 bc6-bc8 bca-bcd bd0-bd0 "
    "bd7-bd7 be6-bfa c00-c0c c0e-c10 c12-c28 c2a-c39 c3c-c44 c46-c48 c4a-c4d c55-c56 c58-c5a "
    "c5d-c5d c60-c63 c66-c6f c77-c8c c8e-c90 c92-ca8 caa-cb3 cb5-cb9 cbc-cc4 cc6-cc8 cca-ccd "
    "cd5-cd6 cdd-cde ce0-ce3 ce6-cef cf1-cf3 d00-d0c d0e-d10 d12-d44 d46-d48 d4a-d4f d54-d63 "
    "d66-d7f d81-d83 d85-d96 d9a-db1 db3-dbb dbd-dbd dc0-dc6 dca-dca dcf-dd4 dd6-dd6 dd8-ddf "
    "de6-def df2-df4 e01-e3a e3f-e5b e81-e82 e84-e84 e86-e8a e8c-ea3 ea5-ea5 ea7-ebd ec0-ec4 "
    "ec6-ec6 ec8-ece ed0-ed9 edc-edf f00-f47 f49-f6c f71-f97 f99-fbc fbe-fcc fce-fda 1000-10c5 "
    "10c7-10c7 10cd-10cd 10d0-1248 124a-124d 1250-1256 1258-1258 125a-125d 1260-1288 128a-128d "
    "1290-12b0 12b2-12b5 12b8-12be 12c0-12c0 12c2-12c5 12c8-12d6 12d8-1310 1312-1315 1318-135a "
    "135d-137c 1380-1399 13a0-13f5 13f8-13fd 1400-167f 1681-169c 16a0-16f8 1700-1715 171f-1736 "
    "1740-1753 1760-176c 176e-1770 1772-1773 1780-17dd 17e0-17e9 17f0-17f9 1800-180d 180f-1819 "
    "1820-1878 1880-18aa 18b0-18f5 1900-191e 1920-192b 1930-193b 1940-1940 1944-196d 1970-1974 "
    "1980-19ab 19b0-19c9 19d0-19da 19de-1a1b 1a1e-1a5e 1a60-1a7c 1a7f-1a89 1a90-1a99 1aa0-1aad "
    "1ab0-1ace 1b00-1b4c 1b4e-1bf3 1bfc-1c37 1c3b-1c49 1c4d-1c8a 1c90-1cba 1cbd-1cc7 1cd0-1cfa "
    "1d00-1f15 1f18-1f1d 1f20-1f45 1f48-1f4d 1f50-1f57 1f59-1f59 1f5b-1f5b 1f5d-1f5d 1f5f-1f7d "
    "1f80-1fb4 1fb6-1fc4 1fc6-1fd3 1fd6-1fdb 1fdd-1fef 1ff2-1ff4 1ff6-1ffe 2010-2027 2030-205e "
    "2070-2071 2074-208e 2090-209c 20a0-20c0 20d0-20f0 2100-218b 2190-2429 2440-244a 2460-2b73 "
    "2b76-2b95 2b97-2cf3 2cf9-2d25 2d27-2d27 2d2d-2d2d 2d30-2d67 2d6f-2d70 2d7f-2d96 2da0-2da6 "
    "2da8-2dae 2db0-2db6 2db8-2dbe 2dc0-2dc6 2dc8-2dce 2dd0-2dd6 2dd8-2dde 2de0-2e5d 2e80-2e99 "
    "2e9b-2ef3 2f00-2fd5 2ff0-2fff 3001-303f 3041-3096 3099-30ff 3105-312f 3131-318e 3190-31e5 "
    "31ef-321e 3220-a48c a490-a4c6 a4d0-a62b a640-a6f7 a700-a7cd a7d0-a7d1 a7d3-a7d3 a7d5-a7dc "
    "a7f2-a82c a830-a839 a840-a877 a880-a8c5 a8ce-a8d9 a8e0-a953 a95f-a97c a980-a9cd a9cf-a9d9 "
    "a9de-a9fe aa00-aa36 aa40-aa4d aa50-aa59 aa5c-aac2 aadb-aaf6 ab01-ab06 ab09-ab0e ab11-ab16 "
    "ab20-ab26 ab28-ab2e ab30-ab6b ab70-abed abf0-abf9 ac00-d7a3 d7b0-d7c6 d7cb-d7fb f900-fa6d "
    "fa70-fad9 fb00-fb06 fb13-fb17 fb1d-fb36 fb38-fb3c fb3e-fb3e fb40-fb41 fb43-fb44 fb46-fbc2 "
    "fbd3-fd8f fd92-fdc7 fdcf-fdcf fdf0-fe19 fe20-fe52 fe54-fe66 fe68-fe6b fe70-fe74 fe76-fefc "
    "ff01-ffbe ffc2-ffc7 ffca-ffcf ffd2-ffd7 ffda-ffdc ffe0-ffe6 ffe8-ffee fffc-fffd "
    "10000-1000b 1000d-10026 10028-1003a 1003c-1003d 1003f-1004d 10050-1005d 10080-100fa "
    "10100-10102 10107-10133 10137-1018e 10190-1019c 101a0-101a0 101d0-101fd 10280-1029c "
    "102a0-102d0 102e0-102fb 10300-10323 1032d-1034a 10350-1037a 10380-1039d 1039f-103c3 "
    "103c8-103d5 10400-1049d 104a0-104a9 104b0-104d3 104d8-104fb 10500-10527 10530-10563 "
    "1056f-1057a 1057c-1058a 1058c-10592 10594-10595 10597-105a1 105a3-105b1 105b3-105b9 "
    "105bb-105bc 105c0-105f3 10600-10736 10740-10755 10760-10767 10780-10785 10787-107b0 "
    "107b2-107ba 10800-10805 10808-10808 1080a-10835 10837-10838 1083c-1083c 1083f-10855 "
    "10857-1089e 108a7-108af 108e0-108f2 108f4-108f5 108fb-1091b 1091f-10939 1093f-1093f "
    "10980-109b7 109bc-109cf 109d2-10a03 10a05-10a06 10a0c-10a13 10a15-10a17 10a19-10a35 "
    "10a38-10a3a 10a3f-10a48 10a50-10a58 10a60-10a9f 10ac0-10ae6 10aeb-10af6 10b00-10b35 "
    "10b39-10b55 10b58-10b72 10b78-10b91 10b99-10b9c 10ba9-10baf 10c00-10c48 10c80-10cb2 "
    "10cc0-10cf2 10cfa-10d27 10d30-10d39 10d40-10d65 10d69-10d85 10d8e-10d8f 10e60-10e7e "
    "10e80-10ea9 10eab-10ead 10eb0-10eb1 10ec2-10ec4 10efc-10f27 10f30-10f59 10f70-10f89 "
    "10fb0-10fcb 10fe0-10ff6 11000-1104d 11052-11075 1107f-110bc 110be-110c2 110d0-110e8 "
    "110f0-110f9 11100-11134 11136-11147 11150-11176 11180-111df 111e1-111f4 11200-11211 "
    "11213-11241 11280-11286 11288-11288 1128a-1128d 1128f-1129d 1129f-112a9 112b0-112ea "
    "112f0-112f9 11300-11303 11305-1130c 1130f-11310 11313-11328 1132a-11330 11332-11333 "
    "11335-11339 1133b-11344 11347-11348 1134b-1134d 11350-11350 11357-11357 1135d-11363 "
    "11366-1136c 11370-11374 11380-11389 1138b-1138b 1138e-1138e 11390-113b5 113b7-113c0 "
    "113c2-113c2 113c5-113c5 113c7-113ca 113cc-113d5 113d7-113d8 113e1-113e2 11400-1145b "
    "1145d-11461 11480-114c7 114d0-114d9 11580-115b5 115b8-115dd 11600-11644 11650-11659 "
    "11660-1166c 11680-116b9 116c0-116c9 116d0-116e3 11700-1171a 1171d-1172b 11730-11746 "
    "11800-1183b 118a0-118f2 118ff-11906 11909-11909 1190c-11913 11915-11916 11918-11935 "
    "11937-11938 1193b-11946 11950-11959 119a0-119a7 119aa-119d7 119da-119e4 11a00-11a47 "
    "11a50-11aa2 11ab0-11af8 11b00-11b09 11bc0-11be1 11bf0-11bf9 11c00-11c08 11c0a-11c36 "
    "11c38-11c45 11c50-11c6c 11c70-11c8f 11c92-11ca7 11ca9-11cb6 11d00-11d06 11d08-11d09 "
    "11d0b-11d36 11d3a-11d3a 11d3c-11d3d 11d3f-11d47 11d50-11d59 11d60-11d65 11d67-11d68 "
    "11d6a-11d8e 11d90-11d91 11d93-11d98 11da0-11da9 11ee0-11ef8 11f00-11f10 11f12-11f3a "
    "11f3e-11f5a 11fb0-11fb0 11fc0-11ff1 11fff-12399 12400-1246e 12470-12474 12480-12543 "
    "12f90-12ff2 13000-1342f 13440-13455 13460-143fa 14400-14646 16100-16139 16800-16a38 "
    "16a40-16a5e 16a60-16a69 16a6e-16abe 16ac0-16ac9 16ad0-16aed 16af0-16af5 16b00-16b45 "
    "16b50-16b59 16b5b-16b61 16b63-16b77 16b7d-16b8f 16d40-16d79 16e40-16e9a 16f00-16f4a "
    "16f4f-16f87 16f8f-16f9f 16fe0-16fe4 16ff0-16ff1 17000-187f7 18800-18cd5 18cff-18d08 "
    "1aff0-1aff3 1aff5-1affb 1affd-1affe 1b000-1b122 1b132-1b132 1b150-1b152 1b155-1b155 "
    "1b164-1b167 1b170-1b2fb 1bc00-1bc6a 1bc70-1bc7c 1bc80-1bc88 1bc90-1bc99 1bc9c-1bc9f "
    "1cc00-1ccf9 1cd00-1ceb3 1cf00-1cf2d 1cf30-1cf46 1cf50-1cfc3 1d000-1d0f5 1d100-1d126 "
    "1d129-1d172 1d17b-1d1ea 1d200-1d245 1d2c0-1d2d3 1d2e0-1d2f3 1d300-1d356 1d360-1d378 "
    "1d400-1d454 1d456-1d49c 1d49e-1d49f 1d4a2-1d4a2 1d4a5-1d4a6 1d4a9-1d4ac 1d4ae-1d4b9 "
    "1d4bb-1d4bb 1d4bd-1d4c3 1d4c5-1d505 1d507-1d50a 1d50d-1d514 1d516-1d51c 1d51e-1d539 "
    "1d53b-1d53e 1d540-1d544 1d546-1d546 1d54a-1d550 1d552-1d6a5 1d6a8-1d7cb 1d7ce-1da8b "
    "1da9b-1da9f 1daa1-1daaf 1df00-1df1e 1df25-1df2a 1e000-1e006 1e008-1e018 1e01b-1e021 "
    "1e023-1e024 1e026-1e02a 1e030-1e06d 1e08f-1e08f 1e100-1e12c 1e130-1e13d 1e140-1e149 "
    "1e14e-1e14f 1e290-1e2ae 1e2c0-1e2f9 1e2ff-1e2ff 1e4d0-1e4f9 1e5d0-1e5fa 1e5ff-1e5ff "
    "1e7e0-1e7e6 1e7e8-1e7eb 1e7ed-1e7ee 1e7f0-1e7fe 1e800-1e8c4 1e8c7-1e8d6 1e900-1e94b "
    "1e950-1e959 1e95e-1e95f 1ec71-1ecb4 1ed01-1ed3d 1ee00-1ee03 1ee05-1ee1f 1ee21-1ee22 "
    "1ee24-1ee24 1ee27-1ee27 1ee29-1ee32 1ee34-1ee37 1ee39-1ee39 1ee3b-1ee3b 1ee42-1ee42 "
    "1ee47-1ee47 1ee49-1ee49 1ee4b-1ee4b 1ee4d-1ee4f 1ee51-1ee52 1ee54-1ee54 1ee57-1ee57 "
    "1ee59-1ee59 1ee5b-1ee5b 1ee5d-1ee5d 1ee5f-1ee5f 1ee61-1ee62 1ee64-1ee64 1ee67-1ee6a "
    "1ee6c-1ee72 1ee74-1ee77 1ee79-1ee7c 1ee7e-1ee7e 1ee80-1ee89 1ee8b-1ee9b 1eea1-1eea3 "
    "1eea5-1eea9 1eeab-1eebb 1eef0-1eef1 1f000-1f02b 1f030-1f093 1f0a0-1f0ae 1f0b1-1f0bf "
    "1f0c1-1f0cf 1f0d1-1f0f5 1f100-1f1ad 1f1e6-1f202 1f210-1f23b 1f240-1f248 1f250-1f251 "
    "1f260-1f265 1f300-1f6d7 1f6dc-1f6ec 1f6f0-1f6fc 1f700-1f776 1f77b-1f7d9 1f7e0-1f7eb "
    "1f7f0-1f7f0 1f800-1f80b 1f810-1f847 1f850-1f859 1f860-1f887 1f890-1f8ad 1f8b0-1f8bb "
    "1f8c0-1f8c1 1f900-1fa53 1fa60-1fa6d 1fa70-1fa7c 1fa80-1fa89 1fa8f-1fac6 1face-1fadc "
    "1fadf-1fae9 1faf0-1faf8 1fb00-1fb92 1fb94-1fbf9 20000-2a6df 2a700-2b739 2b740-2b81d "
    "2b820-2cea1 2ceb0-2ebe0 2ebf0-2ee5d 2f800-2fa1d 30000-3134a 31350-323af e0100-e01ef "
)

_WORD_OR_PLUS_RANGES = (
    "2b-2b 30-39 41-5a 5f-5f 61-7a aa-aa b5-b5 ba-ba c0-d6 d8-f6 f8-2c1 2c6-2d1 2e0-2e4 "
    "2ec-2ec 2ee-2ee 300-374 376-377 37a-37d 37f-37f 386-386 388-38a 38c-38c 38e-3a1 3a3-3f5 "
    "3f7-481 483-52f 531-556 559-559 560-588 591-5bd 5bf-5bf 5c1-5c2 5c4-5c5 5c7-5c7 5d0-5ea "
    "5ef-5f2 610-61a 620-669 66e-6d3 6d5-6dc 6df-6e8 6ea-6fc 6ff-6ff 710-74a 74d-7b1 7c0-7f5 "
    "7fa-7fa 7fd-7fd 800-82d 840-85b 860-86a 870-887 889-88e 897-8e1 8e3-963 966-96f 971-983 "
    "985-98c 98f-990 993-9a8 9aa-9b0 9b2-9b2 9b6-9b9 9bc-9c4 9c7-9c8 9cb-9ce 9d7-9d7 9dc-9dd "
    "9df-9e3 9e6-9f1 9fc-9fc 9fe-9fe a01-a03 a05-a0a a0f-a10 a13-a28 a2a-a30 a32-a33 a35-a36 "
    "a38-a39 a3c-a3c a3e-a42 a47-a48 a4b-a4d a51-a51 a59-a5c a5e-a5e a66-a75 a81-a83 a85-a8d "
    "a8f-a91 a93-aa8 aaa-ab0 ab2-ab3 ab5-ab9 abc-ac5 ac7-ac9 acb-acd ad0-ad0 ae0-ae3 ae6-aef "
    "af9-aff b01-b03 b05-b0c b0f-b10 b13-b28 b2a-b30 b32-b33 b35-b39 b3c-b44 b47-b48 b4b-b4d "
    "b55-b57 b5c-b5d b5f-b63 b66-b6f b71-b71 b82-b83 b85-b8a b8e-b90 b92-b95 b99-b9a b9c-b9c "
    "b9e-b9f ba3-ba4 ba8-baa bae-bb9 bbe-bc2 bc6-bc8 bca-bcd bd0-bd0 bd7-bd7 be6-bef c00-c0c "
    "c0e-c10 c12-c28 c2a-c39 c3c-c44 c46-c48 c4a-c4d c55-c56 c58-c5a c5d-c5d c60-c63 c66-c6f "
    "c80-c83 c85-c8c c8e-c90 c92-ca8 caa-cb3 cb5-cb9 cbc-cc4 cc6-cc8 cca-ccd cd5-cd6 cdd-cde "
    "ce0-ce3 ce6-cef cf1-cf3 d00-d0c d0e-d10 d12-d44 d46-d48 d4a-d4e d54-d57 d5f-d63 d66-d6f "
    "d7a-d7f d81-d83 d85-d96 d9a-db1 db3-dbb dbd-dbd dc0-dc6 dca-dca dcf-dd4 dd6-dd6 dd8-ddf "
    "de6-def df2-df3 e01-e3a e40-e4e e50-e59 e81-e82 e84-e84 e86-e8a e8c-ea3 ea5-ea5 ea7-ebd "
    "ec0-ec4 ec6-ec6 ec8-ece ed0-ed9 edc-edf f00-f00 f18-f19 f20-f29 f35-f35 f37-f37 f39-f39 "
    "f3e-f47 f49-f6c f71-f84 f86-f97 f99-fbc fc6-fc6 1000-1049 1050-109d 10a0-10c5 10c7-10c7 "
    "10cd-10cd 10d0-10fa 10fc-1248 124a-124d 1250-1256 1258-1258 125a-125d 1260-1288 128a-128d "
    "1290-12b0 12b2-12b5 12b8-12be 12c0-12c0 12c2-12c5 12c8-12d6 12d8-1310 1312-1315 1318-135a "
    "135d-135f 1380-138f 13a0-13f5 13f8-13fd 1401-166c 166f-167f 1681-169a 16a0-16ea 16ee-16f8 "
    "1700-1715 171f-1734 1740-1753 1760-176c 176e-1770 1772-1773 1780-17d3 17d7-17d7 17dc-17dd "
    "17e0-17e9 180b-180d 180f-1819 1820-1878 1880-18aa 18b0-18f5 1900-191e 1920-192b 1930-193b "
    "1946-196d 1970-1974 1980-19ab 19b0-19c9 19d0-19d9 1a00-1a1b 1a20-1a5e 1a60-1a7c 1a7f-1a89 "
    "1a90-1a99 1aa7-1aa7 1ab0-1ace 1b00-1b4c 1b50-1b59 1b6b-1b73 1b80-1bf3 1c00-1c37 1c40-1c49 "
    "1c4d-1c7d 1c80-1c8a 1c90-1cba 1cbd-1cbf 1cd0-1cd2 1cd4-1cfa 1d00-1f15 1f18-1f1d 1f20-1f45 "
    "1f48-1f4d 1f50-1f57 1f59-1f59 1f5b-1f5b 1f5d-1f5d 1f5f-1f7d 1f80-1fb4 1fb6-1fbc 1fbe-1fbe "
    "1fc2-1fc4 1fc6-1fcc 1fd0-1fd3 1fd6-1fdb 1fe0-1fec 1ff2-1ff4 1ff6-1ffc 200c-200d 203f-2040 "
    "2054-2054 2071-2071 207f-207f 2090-209c 20d0-20f0 2102-2102 2107-2107 210a-2113 2115-2115 "
    "2119-211d 2124-2124 2126-2126 2128-2128 212a-212d 212f-2139 213c-213f 2145-2149 214e-214e "
    "2160-2188 24b6-24e9 2c00-2ce4 2ceb-2cf3 2d00-2d25 2d27-2d27 2d2d-2d2d 2d30-2d67 2d6f-2d6f "
    "2d7f-2d96 2da0-2da6 2da8-2dae 2db0-2db6 2db8-2dbe 2dc0-2dc6 2dc8-2dce 2dd0-2dd6 2dd8-2dde "
    "2de0-2dff 2e2f-2e2f 3005-3007 3021-302f 3031-3035 3038-303c 3041-3096 3099-309a 309d-309f "
    "30a1-30fa 30fc-30ff 3105-312f 3131-318e 31a0-31bf 31f0-31ff 3400-4dbf 4e00-a48c a4d0-a4fd "
    "a500-a60c a610-a62b a640-a672 a674-a67d a67f-a6f1 a717-a71f a722-a788 a78b-a7cd a7d0-a7d1 "
    "a7d3-a7d3 a7d5-a7dc a7f2-a827 a82c-a82c a840-a873 a880-a8c5 a8d0-a8d9 a8e0-a8f7 a8fb-a8fb "
    "a8fd-a92d a930-a953 a960-a97c a980-a9c0 a9cf-a9d9 a9e0-a9fe aa00-aa36 aa40-aa4d aa50-aa59 "
    "aa60-aa76 aa7a-aac2 aadb-aadd aae0-aaef aaf2-aaf6 ab01-ab06 ab09-ab0e ab11-ab16 ab20-ab26 "
    "ab28-ab2e ab30-ab5a ab5c-ab69 ab70-abea abec-abed abf0-abf9 ac00-d7a3 d7b0-d7c6 d7cb-d7fb "
    "f900-fa6d fa70-fad9 fb00-fb06 fb13-fb17 fb1d-fb28 fb2a-fb36 fb38-fb3c fb3e-fb3e fb40-fb41 "
    "fb43-fb44 fb46-fbb1 fbd3-fd3d fd50-fd8f fd92-fdc7 fdf0-fdfb fe00-fe0f fe20-fe2f fe33-fe34 "
    "fe4d-fe4f fe70-fe74 fe76-fefc ff10-ff19 ff21-ff3a ff3f-ff3f ff41-ff5a ff66-ffbe ffc2-ffc7 "
    "ffca-ffcf ffd2-ffd7 ffda-ffdc 10000-1000b 1000d-10026 10028-1003a 1003c-1003d 1003f-1004d "
    "10050-1005d 10080-100fa 10140-10174 101fd-101fd 10280-1029c 102a0-102d0 102e0-102e0 "
    "10300-1031f 1032d-1034a 10350-1037a 10380-1039d 103a0-103c3 103c8-103cf 103d1-103d5 "
    "10400-1049d 104a0-104a9 104b0-104d3 104d8-104fb 10500-10527 10530-10563 10570-1057a "
    "1057c-1058a 1058c-10592 10594-10595 10597-105a1 105a3-105b1 105b3-105b9 105bb-105bc "
    "105c0-105f3 10600-10736 10740-10755 10760-10767 10780-10785 10787-107b0 107b2-107ba "
    "10800-10805 10808-10808 1080a-10835 10837-10838 1083c-1083c 1083f-10855 10860-10876 "
    "10880-1089e 108e0-108f2 108f4-108f5 10900-10915 10920-10939 10980-109b7 109be-109bf "
    "10a00-10a03 10a05-10a06 10a0c-10a13 10a15-10a17 10a19-10a35 10a38-10a3a 10a3f-10a3f "
    "10a60-10a7c 10a80-10a9c 10ac0-10ac7 10ac9-10ae6 10b00-10b35 10b40-10b55 10b60-10b72 "
    "10b80-10b91 10c00-10c48 10c80-10cb2 10cc0-10cf2 10d00-10d27 10d30-10d39 10d40-10d65 "
    "10d69-10d6d 10d6f-10d85 10e80-10ea9 10eab-10eac 10eb0-10eb1 10ec2-10ec4 10efc-10f1c "
    "10f27-10f27 10f30-10f50 10f70-10f85 10fb0-10fc4 10fe0-10ff6 11000-11046 11066-11075 "
    "1107f-110ba 110c2-110c2 110d0-110e8 110f0-110f9 11100-11134 11136-1113f 11144-11147 "
    "11150-11173 11176-11176 11180-111c4 111c9-111cc 111ce-111da 111dc-111dc 11200-11211 "
    "11213-11237 1123e-11241 11280-11286 11288-11288 1128a-1128d 1128f-1129d 1129f-112a8 "
    "112b0-112ea 112f0-112f9 11300-11303 11305-1130c 1130f-11310 11313-11328 1132a-11330 "
    "11332-11333 11335-11339 1133b-11344 11347-11348 1134b-1134d 11350-11350 11357-11357 "
    "1135d-11363 11366-1136c 11370-11374 11380-11389 1138b-1138b 1138e-1138e 11390-113b5 "
    "113b7-113c0 113c2-113c2 113c5-113c5 113c7-113ca 113cc-113d3 113e1-113e2 11400-1144a "
    "11450-11459 1145e-11461 11480-114c5 114c7-114c7 114d0-114d9 11580-115b5 115b8-115c0 "
    "115d8-115dd 11600-11640 11644-11644 11650-11659 11680-116b8 116c0-116c9 116d0-116e3 "
    "11700-1171a 1171d-1172b 11730-11739 11740-11746 11800-1183a 118a0-118e9 118ff-11906 "
    "11909-11909 1190c-11913 11915-11916 11918-11935 11937-11938 1193b-11943 11950-11959 "
    "119a0-119a7 119aa-119d7 119da-119e1 119e3-119e4 11a00-11a3e 11a47-11a47 11a50-11a99 "
    "11a9d-11a9d 11ab0-11af8 11bc0-11be0 11bf0-11bf9 11c00-11c08 11c0a-11c36 11c38-11c40 "
    "11c50-11c59 11c72-11c8f 11c92-11ca7 11ca9-11cb6 11d00-11d06 11d08-11d09 11d0b-11d36 "
    "11d3a-11d3a 11d3c-11d3d 11d3f-11d47 11d50-11d59 11d60-11d65 11d67-11d68 11d6a-11d8e "
    "11d90-11d91 11d93-11d98 11da0-11da9 11ee0-11ef6 11f00-11f10 11f12-11f3a 11f3e-11f42 "
    "11f50-11f5a 11fb0-11fb0 12000-12399 12400-1246e 12480-12543 12f90-12ff0 13000-1342f "
    "13440-13455 13460-143fa 14400-14646 16100-16139 16800-16a38 16a40-16a5e 16a60-16a69 "
    "16a70-16abe 16ac0-16ac9 16ad0-16aed 16af0-16af4 16b00-16b36 16b40-16b43 16b50-16b59 "
    "16b63-16b77 16b7d-16b8f 16d40-16d6c 16d70-16d79 16e40-16e7f 16f00-16f4a 16f4f-16f87 "
    "16f8f-16f9f 16fe0-16fe1 16fe3-16fe4 16ff0-16ff1 17000-187f7 18800-18cd5 18cff-18d08 "
    "1aff0-1aff3 1aff5-1affb 1affd-1affe 1b000-1b122 1b132-1b132 1b150-1b152 1b155-1b155 "
    "1b164-1b167 1b170-1b2fb 1bc00-1bc6a 1bc70-1bc7c 1bc80-1bc88 1bc90-1bc99 1bc9d-1bc9e "
    "1ccf0-1ccf9 1cf00-1cf2d 1cf30-1cf46 1d165-1d169 1d16d-1d172 1d17b-1d182 1d185-1d18b "
    "1d1aa-1d1ad 1d242-1d244 1d400-1d454 1d456-1d49c 1d49e-1d49f 1d4a2-1d4a2 1d4a5-1d4a6 "
    "1d4a9-1d4ac 1d4ae-1d4b9 1d4bb-1d4bb 1d4bd-1d4c3 1d4c5-1d505 1d507-1d50a 1d50d-1d514 "
    "1d516-1d51c 1d51e-1d539 1d53b-1d53e 1d540-1d544 1d546-1d546 1d54a-1d550 1d552-1d6a5 "
    "1d6a8-1d6c0 1d6c2-1d6da 1d6dc-1d6fa 1d6fc-1d714 1d716-1d734 1d736-1d74e 1d750-1d76e "
    "1d770-1d788 1d78a-1d7a8 1d7aa-1d7c2 1d7c4-1d7cb 1d7ce-1d7ff 1da00-1da36 1da3b-1da6c "
    "1da75-1da75 1da84-1da84 1da9b-1da9f 1daa1-1daaf 1df00-1df1e 1df25-1df2a 1e000-1e006 "
    "1e008-1e018 1e01b-1e021 1e023-1e024 1e026-1e02a 1e030-1e06d 1e08f-1e08f 1e100-1e12c "
    "1e130-1e13d 1e140-1e149 1e14e-1e14e 1e290-1e2ae 1e2c0-1e2f9 1e4d0-1e4f9 1e5d0-1e5fa "
    "1e7e0-1e7e6 1e7e8-1e7eb 1e7ed-1e7ee 1e7f0-1e7fe 1e800-1e8c4 1e8d0-1e8d6 1e900-1e94b "
    "1e950-1e959 1ee00-1ee03 1ee05-1ee1f 1ee21-1ee22 1ee24-1ee24 1ee27-1ee27 1ee29-1ee32 "
    "1ee34-1ee37 1ee39-1ee39 1ee3b-1ee3b 1ee42-1ee42 1ee47-1ee47 1ee49-1ee49 1ee4b-1ee4b "
    "1ee4d-1ee4f 1ee51-1ee52 1ee54-1ee54 1ee57-1ee57 1ee59-1ee59 1ee5b-1ee5b 1ee5d-1ee5d "
    "1ee5f-1ee5f 1ee61-1ee62 1ee64-1ee64 1ee67-1ee6a 1ee6c-1ee72 1ee74-1ee77 1ee79-1ee7c "
    "1ee7e-1ee7e 1ee80-1ee89 1ee8b-1ee9b 1eea1-1eea3 1eea5-1eea9 1eeab-1eebb 1f130-1f149 "
    "1f150-1f169 1f170-1f189 1fbf0-1fbf9 20000-2a6df 2a700-2b739 2b740-2b81d 2b820-2cea1 "
    "2ceb0-2ebe0 2ebf0-2ee5d 2f800-2fa1d 30000-3134a 31350-323af e0100-e01ef "
)

_NO_WHITE_SPACE_RANGES = (
    "0-8 e-1f 21-84 86-9f a1-167f 1681-1fff 200b-2027 202a-202e 2030-205e 2060-2fff 3001-d7ff "
    "e000-10ffff "
)
