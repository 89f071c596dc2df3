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
ACN|Accenture plc|Accenture
TMO|Thermo Fisher Scientific Inc.|Thermo Fisher
ABT|Abbott Laboratories|Abbott
DHR|Danaher Corporation|Danaher
LIN|Linde plc|=Linde
AMGN|Amgen Inc.|Amgen
NOW|ServiceNow Inc.|ServiceNow
INTU|Intuit Inc.|Intuit
HON|Honeywell International Inc.|Honeywell
UNP|Union Pacific Corporation|Union Pacific
RTX|RTX Corporation|Raytheon
LMT|Lockheed Martin Corporation|Lockheed Martin,Lockheed
NOC|Northrop Grumman Corporation|Northrop Grumman
GD|General Dynamics Corporation|General Dynamics
DE|Deere & Company|John Deere,=Deere
MMM|3M Company|3M
SPGI|S&P Global Inc.|S&P Global
BLK|BlackRock Inc.|BlackRock
SCHW|Charles Schwab Corporation|Charles Schwab,Schwab
AXP|American Express Co.|American Express,Amex
BX|Blackstone Inc.|Blackstone
KKR|KKR & Co. Inc.|
CVS|CVS Health Corporation|CVS Health
CI|Cigna Group|Cigna
ELV|Elevance Health Inc.|Elevance
GILD|Gilead Sciences Inc.|Gilead
BMY|Bristol-Myers Squibb Co.|Bristol-Myers Squibb,Bristol Myers
MRNA|Moderna Inc.|Moderna
REGN|Regeneron Pharmaceuticals Inc.|Regeneron
VRTX|Vertex Pharmaceuticals Inc.|Vertex Pharmaceuticals
ISRG|Intuitive Surgical Inc.|Intuitive Surgical
SNOW|Snowflake Inc.|Snowflake
SHOP|Shopify Inc.|Shopify
SQ|Block Inc.|Square
PANW|Palo Alto Networks Inc.|Palo Alto Networks
CRWD|CrowdStrike Holdings Inc.|CrowdStrike
NET|Cloudflare Inc.|Cloudflare
DDOG|Datadog Inc.|Datadog
ZM|Zoom Video Communications Inc.|Zoom Video
RIVN|Rivian Automotive Inc.|Rivian
LCID|Lucid Group Inc.|Lucid Motors
NIO|NIO Inc.|
SOFI|SoFi Technologies Inc.|SoFi
MSTR|MicroStrategy Inc.|MicroStrategy,Strategy Inc.
MARA|Marathon Digital Holdings Inc.|Marathon Digital
RBLX|Roblox Corporation|Roblox
SNAP|Snap Inc.|Snapchat
PINS|Pinterest Inc.|Pinterest
SPOT|Spotify Technology S.A.|Spotify
DAL|Delta Air Lines Inc.|Delta Air Lines
UAL|United Airlines Holdings Inc.|United Airlines
AAL|American Airlines Group Inc.|American Airlines
CCL|Carnival Corporation|Carnival Cruise
COP|ConocoPhillips|ConocoPhillips
OXY|Occidental Petroleum Corporation|Occidental Petroleum,Occidental
SLB|SLB N.V.|Schlumberger
NEM|Newmont Corporation|Newmont
FCX|Freeport-McMoRan Inc.|Freeport-McMoRan,Freeport
BIDU|Baidu Inc.|Baidu
JD|JD.com Inc.|JD.com
PDD|PDD Holdings Inc.|Pinduoduo,Temu
SONY|Sony Group Corporation|=Sony
TM|Toyota Motor Corporation|Toyota
HSBC|HSBC Holdings plc|
UBS|UBS Group AG|
SAP|SAP SE|
ARM|Arm Holdings plc|Arm Holdings
DELL|Dell Technologies Inc.|=Dell
HPQ|HP Inc.|
WBD|Warner Bros. Discovery Inc.|Warner Bros. Discovery,Warner Bros
PARA|Paramount Global|=Paramount
CMCSA|Comcast Corporation|Comcast
TMUS|T-Mobile US Inc.|T-Mobile
CHWY|Chewy Inc.|Chewy
BBBY|Bed Bath & Beyond Inc.|Bed Bath & Beyond
VOO|Vanguard S&P 500 ETF|
VTI|Vanguard Total Stock Market ETF|
SLV|iShares Silver Trust|
USO|United States Oil Fund|
HYG|iShares iBoxx High Yield Corporate Bond ETF|
TQQQ|ProShares UltraPro QQQ|
SQQQ|ProShares UltraPro Short QQQ|
SMH|VanEck Semiconductor ETF|
EEM|iShares MSCI Emerging Markets ETF|
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
