"""Writes kb_sync/data/entities.json from the table below (python scripts/make_entities.py)."""

from __future__ import annotations

import json
from pathlib import Path

# ticker | name | aliases (comma separated; a leading '=' marks a case-sensitive alias)
TABLE = """
AAPL|Apple Inc.|Apple
MSFT|Microsoft Corporation|Microsoft
NVDA|NVIDIA Corporation|Nvidia,NVIDIA
AMZN|Amazon.com Inc.|Amazon
GOOGL|Alphabet Inc. Class A|Alphabet,Google
GOOG|Alphabet Inc. Class C|
META|Meta Platforms Inc.|Meta Platforms,Facebook,=Meta
TSLA|Tesla Inc.|Tesla
BRK.B|Berkshire Hathaway Inc.|Berkshire Hathaway,Berkshire
JPM|JPMorgan Chase & Co.|JPMorgan,JP Morgan,JPMorgan Chase
V|Visa Inc.|=Visa
MA|Mastercard Inc.|Mastercard
UNH|UnitedHealth Group Inc.|UnitedHealth
XOM|Exxon Mobil Corporation|Exxon,ExxonMobil,Exxon Mobil
JNJ|Johnson & Johnson|Johnson & Johnson,J&J
WMT|Walmart Inc.|Walmart
PG|Procter & Gamble Co.|Procter & Gamble,P&G
HD|Home Depot Inc.|Home Depot
CVX|Chevron Corporation|Chevron
LLY|Eli Lilly and Company|Eli Lilly,Lilly
AVGO|Broadcom Inc.|Broadcom
KO|Coca-Cola Co.|Coca-Cola,Coke
PEP|PepsiCo Inc.|PepsiCo,Pepsi
COST|Costco Wholesale Corporation|Costco
ORCL|Oracle Corporation|Oracle
BAC|Bank of America Corporation|Bank of America,BofA
ADBE|Adobe Inc.|Adobe
CRM|Salesforce Inc.|Salesforce
NFLX|Netflix Inc.|Netflix
AMD|Advanced Micro Devices Inc.|Advanced Micro Devices
INTC|Intel Corporation|Intel
CSCO|Cisco Systems Inc.|Cisco
PFE|Pfizer Inc.|Pfizer
MRK|Merck & Co. Inc.|Merck
ABBV|AbbVie Inc.|AbbVie
DIS|Walt Disney Co.|Disney
NKE|Nike Inc.|Nike
MCD|McDonald's Corporation|McDonald's,McDonalds
WFC|Wells Fargo & Co.|Wells Fargo
GS|Goldman Sachs Group Inc.|Goldman Sachs,Goldman
MS|Morgan Stanley|Morgan Stanley
C|Citigroup Inc.|Citigroup,Citi
BA|Boeing Co.|Boeing
CAT|Caterpillar Inc.|Caterpillar
GE|General Electric Co.|General Electric,GE Aerospace
F|Ford Motor Co.|=Ford,Ford Motor
GM|General Motors Co.|General Motors
T|AT&T Inc.|AT&T
VZ|Verizon Communications Inc.|Verizon
IBM|International Business Machines Corp.|IBM
QCOM|Qualcomm Inc.|Qualcomm
TXN|Texas Instruments Inc.|Texas Instruments
MU|Micron Technology Inc.|Micron
PYPL|PayPal Holdings Inc.|PayPal
UBER|Uber Technologies Inc.|Uber
ABNB|Airbnb Inc.|Airbnb
SBUX|Starbucks Corporation|Starbucks
TGT|Target Corporation|=Target
LOW|Lowe's Companies Inc.|Lowe's
UPS|United Parcel Service Inc.|United Parcel Service
FDX|FedEx Corporation|FedEx
PLTR|Palantir Technologies Inc.|Palantir
COIN|Coinbase Global Inc.|Coinbase
HOOD|Robinhood Markets Inc.|Robinhood
GME|GameStop Corp.|GameStop
AMC|AMC Entertainment Holdings Inc.|AMC Entertainment
BABA|Alibaba Group Holding Ltd.|Alibaba
TSM|Taiwan Semiconductor Manufacturing Co.|TSMC,Taiwan Semiconductor
ASML|ASML Holding N.V.|ASML
NVO|Novo Nordisk A/S|Novo Nordisk
SHEL|Shell plc|=Shell
BP|BP plc|
SPY|SPDR S&P 500 ETF Trust|SPDR S&P 500
QQQ|Invesco QQQ Trust|Invesco QQQ
IWM|iShares Russell 2000 ETF|
DIA|SPDR Dow Jones Industrial Average ETF|
GLD|SPDR Gold Shares|
TLT|iShares 20+ Year Treasury Bond ETF|
XLE|Energy Select Sector SPDR Fund|
XLF|Financial Select Sector SPDR Fund|
ARKK|ARK Innovation ETF|
SMCI|Super Micro Computer Inc.|Super Micro Computer,Supermicro
"""


def build() -> dict[str, object]:
    entities = []
    for line in TABLE.strip().splitlines():
        ticker, name, aliases = line.split("|")
        items: list[object] = [f"${ticker}"]
        for alias in filter(None, aliases.split(",")):
            if alias.startswith("="):
                items.append({"alias": alias[1:], "case_sensitive": True})
            else:
                items.append(alias)
        entities.append({"ticker": ticker, "name": name, "aliases": items})
    return {"version": 1, "entities": entities}


if __name__ == "__main__":
    out = Path(__file__).resolve().parents[1] / "kb_sync" / "data" / "entities.json"
    out.write_text(json.dumps(build(), indent=1) + "\n", encoding="utf-8")
    print(f"wrote {out}")
