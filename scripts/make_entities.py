"""Writes kb_sync/data/entities.json from the table below (python scripts/make_entities.py)."""

from __future__ import annotations

import json
import re
from pathlib import Path

# ticker | name | aliases (comma separated; a leading '=' marks a case-sensitive alias). Lines starting with
# '#' are section comments. Written by hand (no downloads): S&P 500 large caps, Nasdaq-100, popular ETFs,
# retail favourites and big ADRs.
#
# Aliases that are also ordinary words are case-sensitive (=Oracle, =Intel) or written out in full
# (Target Corp, Abbott Laboratories, Progressive Corp), since a bare capitalised "Target" also starts
# "Target practice ...". "Nasdaq" alone is the index, so Nasdaq Inc. only matches as "Nasdaq Inc.".
#
# Bare uppercase tickers match whenever they are not in worker.entities.STOPLIST, so tickers that are
# everyday acronyms are left out on purpose (see UNLISTED): they would tag e.g. "9:30 a.m. ET" or "LNG
# exports". Tickers that are stoplisted (ALL, ON, IT, NOW, SO, PM, DD, BE, HAS, A) are kept: they only match
# as $CASHTAGS or by name.
TABLE = """
# Mega caps and the rest of the original list
AAPL|Apple Inc.|Apple,iPhone
MSFT|Microsoft Corporation|Microsoft
NVDA|NVIDIA Corporation|Nvidia,NVIDIA
AMZN|Amazon.com Inc.|Amazon,Amazon Web Services,AWS
GOOGL|Alphabet Inc. Class A|=Alphabet,Google,YouTube
GOOG|Alphabet Inc. Class C|
META|Meta Platforms Inc.|Meta Platforms,Facebook,Instagram,WhatsApp,=Meta
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
LLY|Eli Lilly and Company|Eli Lilly,=Lilly
AVGO|Broadcom Inc.|Broadcom
KO|Coca-Cola Co.|Coca-Cola,=Coke
PEP|PepsiCo Inc.|PepsiCo,Pepsi
COST|Costco Wholesale Corporation|Costco
ORCL|Oracle Corporation|=Oracle
BAC|Bank of America Corporation|Bank of America,BofA
ADBE|Adobe Inc.|=Adobe
CRM|Salesforce Inc.|=Salesforce
NFLX|Netflix Inc.|Netflix
AMD|Advanced Micro Devices Inc.|Advanced Micro Devices
INTC|Intel Corporation|=Intel
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
CAT|Caterpillar Inc.|=Caterpillar
GE|General Electric Co.|General Electric,GE Aerospace
F|Ford Motor Co.|=Ford,Ford Motor
GM|General Motors Co.|General Motors
T|AT&T Inc.|AT&T
VZ|Verizon Communications Inc.|Verizon
IBM|International Business Machines Corp.|IBM
QCOM|Qualcomm Inc.|Qualcomm
TXN|Texas Instruments Inc.|Texas Instruments
MU|Micron Technology Inc.|=Micron
PYPL|PayPal Holdings Inc.|PayPal
UBER|Uber Technologies Inc.|=Uber
ABNB|Airbnb Inc.|Airbnb
SBUX|Starbucks Corporation|Starbucks
TGT|Target Corporation|Target Corp,Target Corporation,=Target's,=Target’s
LOW|Lowe's Companies Inc.|Lowe's,Lowe’s
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
ABT|Abbott Laboratories|Abbott Laboratories,Abbott Labs
DHR|Danaher Corporation|Danaher
LIN|Linde plc|=Linde
AMGN|Amgen Inc.|Amgen
NOW|ServiceNow Inc.|ServiceNow
INTU|Intuit Inc.|=Intuit
HON|Honeywell International Inc.|Honeywell
UNP|Union Pacific Corporation|Union Pacific
RTX|RTX Corporation|Raytheon
LMT|Lockheed Martin Corporation|Lockheed Martin,Lockheed
NOC|Northrop Grumman Corporation|Northrop Grumman
GD|General Dynamics Corporation|General Dynamics
DE|Deere & Company|John Deere,=Deere
MMM|3M Company|3M Co,3M Company,=3M's,=3M’s
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
SNOW|Snowflake Inc.|=Snowflake
SHOP|Shopify Inc.|Shopify
SQ|Block Inc.|Block Inc.,Cash App
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
FCX|Freeport-McMoRan Inc.|Freeport-McMoRan
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
CHWY|Chewy Inc.|=Chewy
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
# Semiconductors and hardware
AMAT|Applied Materials Inc.|Applied Materials
LRCX|Lam Research Corporation|Lam Research
KLAC|KLA Corporation|KLA Corp
ADI|Analog Devices Inc.|Analog Devices
MCHP|Microchip Technology Inc.|Microchip Technology
NXPI|NXP Semiconductors N.V.|NXP Semiconductors
MRVL|Marvell Technology Inc.|Marvell
ON|ON Semiconductor Corporation|ON Semiconductor,onsemi
MPWR|Monolithic Power Systems Inc.|Monolithic Power
TER|Teradyne Inc.|Teradyne
SWKS|Skyworks Solutions Inc.|Skyworks
QRVO|Qorvo Inc.|Qorvo
ENTG|Entegris Inc.|Entegris
GFS|GlobalFoundries Inc.|GlobalFoundries
WDC|Western Digital Corporation|Western Digital
STX|Seagate Technology Holdings plc|Seagate
NTAP|NetApp Inc.|NetApp
HPE|Hewlett Packard Enterprise Co.|Hewlett Packard Enterprise
ANET|Arista Networks Inc.|Arista Networks
COHR|Coherent Corp.|Coherent Corp
LITE|Lumentum Holdings Inc.|Lumentum
CIEN|Ciena Corporation|Ciena
APH|Amphenol Corporation|Amphenol
GLW|Corning Inc.|=Corning Inc
ZBRA|Zebra Technologies Corporation|Zebra Technologies
ALAB|Astera Labs Inc.|Astera Labs
VRT|Vertiv Holdings Co.|Vertiv
CRWV|CoreWeave Inc.|CoreWeave
NBIS|Nebius Group N.V.|Nebius
# Software and internet
CDNS|Cadence Design Systems Inc.|Cadence Design Systems,Cadence Design
SNPS|Synopsys Inc.|Synopsys
ADSK|Autodesk Inc.|Autodesk
WDAY|Workday Inc.|Workday
TEAM|Atlassian Corporation|Atlassian
MDB|MongoDB Inc.|MongoDB
HUBS|HubSpot Inc.|HubSpot
TTD|The Trade Desk Inc.|The Trade Desk
DOCU|DocuSign Inc.|DocuSign
TWLO|Twilio Inc.|Twilio
ESTC|Elastic N.V.|Elastic N.V.
GTLB|GitLab Inc.|GitLab
APP|AppLovin Corporation|AppLovin
FTNT|Fortinet Inc.|Fortinet
ZS|Zscaler Inc.|Zscaler
OKTA|Okta Inc.|=Okta
S|SentinelOne Inc.|SentinelOne
FICO|Fair Isaac Corporation|Fair Isaac
VRSN|VeriSign Inc.|VeriSign
AKAM|Akamai Technologies Inc.|Akamai
FFIV|F5 Inc.|F5 Inc
GDDY|GoDaddy Inc.|GoDaddy
TYL|Tyler Technologies Inc.|Tyler Technologies
PTC|PTC Inc.|
CDW|CDW Corporation|
EPAM|EPAM Systems Inc.|
CTSH|Cognizant Technology Solutions Corp.|Cognizant
IT|Gartner Inc.|Gartner
ADP|Automatic Data Processing Inc.|Automatic Data Processing
PAYX|Paychex Inc.|Paychex
U|Unity Software Inc.|Unity Software
DASH|DoorDash Inc.|DoorDash
LYFT|Lyft Inc.|=Lyft
EBAY|eBay Inc.|eBay
ETSY|Etsy Inc.|=Etsy
W|Wayfair Inc.|Wayfair
CVNA|Carvana Co.|Carvana
KMX|CarMax Inc.|CarMax
RDDT|Reddit Inc.|Reddit
DJT|Trump Media & Technology Group Corp.|Trump Media,Truth Social
CPNG|Coupang Inc.|Coupang
MELI|MercadoLibre Inc.|MercadoLibre,Mercado Libre
SE|Sea Limited|Sea Ltd,Sea Limited,Shopee
GRAB|Grab Holdings Ltd.|Grab Holdings
CHTR|Charter Communications Inc.|Charter Communications
FOXA|Fox Corporation Class A|Fox Corp,Fox Corporation
NWSA|News Corp Class A|News Corp
LYV|Live Nation Entertainment Inc.|Live Nation,Ticketmaster
EA|Electronic Arts Inc.|Electronic Arts
TTWO|Take-Two Interactive Software Inc.|Take-Two,Take-Two Interactive
ROKU|Roku Inc.|=Roku
SIRI|Sirius XM Holdings Inc.|Sirius XM,SiriusXM
MTCH|Match Group Inc.|Match Group,Tinder
ZG|Zillow Group Inc.|Zillow
# Financials
PNC|PNC Financial Services Group Inc.|PNC Financial
TFC|Truist Financial Corporation|Truist
COF|Capital One Financial Corporation|Capital One
SYF|Synchrony Financial|Synchrony
FITB|Fifth Third Bancorp|Fifth Third
MTB|M&T Bank Corporation|M&T Bank
HBAN|Huntington Bancshares Inc.|Huntington Bancshares
CFG|Citizens Financial Group Inc.|Citizens Financial
STT|State Street Corporation|=State Street
NTRS|Northern Trust Corporation|Northern Trust
BK|Bank of New York Mellon Corporation|BNY Mellon,Bank of New York Mellon,=BNY
TROW|T. Rowe Price Group Inc.|T. Rowe Price,T. Rowe
IVZ|Invesco Ltd.|Invesco
RJF|Raymond James Financial Inc.|Raymond James
LPLA|LPL Financial Holdings Inc.|LPL Financial
IBKR|Interactive Brokers Group Inc.|Interactive Brokers
APO|Apollo Global Management Inc.|Apollo Global Management,Apollo Global
ARES|Ares Management Corporation|Ares Management
CG|Carlyle Group Inc.|Carlyle Group,=Carlyle
CME|CME Group Inc.|CME Group
CBOE|Cboe Global Markets Inc.|Cboe Global Markets
NDAQ|Nasdaq Inc.|Nasdaq Inc.
MCO|Moody's Corporation|Moody's,Moody’s
MSCI|MSCI Inc.|
FDS|FactSet Research Systems Inc.|FactSet
AON|Aon plc|=Aon
MMC|Marsh & McLennan Companies Inc.|Marsh McLennan,Marsh & McLennan
WTW|Willis Towers Watson plc|Willis Towers Watson
AJG|Arthur J. Gallagher & Co.|Arthur J. Gallagher
PGR|Progressive Corporation|Progressive Corp,Progressive Insurance
ALL|Allstate Corporation|Allstate
TRV|Travelers Companies Inc.|Travelers Companies
CB|Chubb Limited|=Chubb
AIG|American International Group Inc.|American International Group
MET|MetLife Inc.|MetLife
PRU|Prudential Financial Inc.|Prudential Financial
HIG|Hartford Financial Services Group Inc.|Hartford Financial
L|Loews Corporation|Loews Corp
FI|Fiserv Inc.|Fiserv
FIS|Fidelity National Information Services Inc.|Fidelity National Information Services
GPN|Global Payments Inc.|Global Payments
AFRM|Affirm Holdings Inc.|=Affirm Holdings
UPST|Upstart Holdings Inc.|=Upstart
TOST|Toast Inc.|Toast Inc
RKT|Rocket Companies Inc.|Rocket Companies,Rocket Mortgage
NU|Nu Holdings Ltd.|Nu Holdings,Nubank
CRCL|Circle Internet Group Inc.|Circle Internet
# Industrials, transport, defence
ETN|Eaton Corporation plc|=Eaton
EMR|Emerson Electric Co.|Emerson Electric
ITW|Illinois Tool Works Inc.|Illinois Tool Works
PH|Parker-Hannifin Corporation|Parker-Hannifin,Parker Hannifin
ROK|Rockwell Automation Inc.|Rockwell Automation
DOV|Dover Corporation|Dover Corp
AME|AMETEK Inc.|Ametek
XYL|Xylem Inc.|Xylem
CMI|Cummins Inc.|=Cummins
PCAR|PACCAR Inc.|Paccar
WAB|Westinghouse Air Brake Technologies Corp.|Wabtec
TT|Trane Technologies plc|Trane Technologies,=Trane
CARR|Carrier Global Corporation|Carrier Global
OTIS|Otis Worldwide Corporation|Otis Worldwide,Otis Elevator
JCI|Johnson Controls International plc|Johnson Controls
GWW|W.W. Grainger Inc.|Grainger
URI|United Rentals Inc.|United Rentals
CTAS|Cintas Corporation|Cintas
RSG|Republic Services Inc.|Republic Services
WM|Waste Management Inc.|Waste Management Inc
CSX|CSX Corporation|
NSC|Norfolk Southern Corporation|Norfolk Southern
ODFL|Old Dominion Freight Line Inc.|Old Dominion Freight
JBHT|J.B. Hunt Transport Services Inc.|J.B. Hunt
CHRW|C.H. Robinson Worldwide Inc.|C.H. Robinson
EXPD|Expeditors International of Washington Inc.|Expeditors International
LUV|Southwest Airlines Co.|Southwest Airlines
ALK|Alaska Air Group Inc.|Alaska Air,Alaska Airlines
JBLU|JetBlue Airways Corporation|JetBlue
TDG|TransDigm Group Inc.|TransDigm
HWM|Howmet Aerospace Inc.|Howmet
TXT|Textron Inc.|Textron
LHX|L3Harris Technologies Inc.|L3Harris
HII|Huntington Ingalls Industries Inc.|Huntington Ingalls
AXON|Axon Enterprise Inc.|Axon Enterprise
LDOS|Leidos Holdings Inc.|Leidos
GEV|GE Vernova Inc.|GE Vernova
PWR|Quanta Services Inc.|Quanta Services
EME|EMCOR Group Inc.|EMCOR
VRSK|Verisk Analytics Inc.|Verisk
EFX|Equifax Inc.|Equifax
CPRT|Copart Inc.|Copart
ROP|Roper Technologies Inc.|Roper Technologies
TDY|Teledyne Technologies Inc.|Teledyne
FTV|Fortive Corporation|Fortive
BLDR|Builders FirstSource Inc.|Builders FirstSource
SWK|Stanley Black & Decker Inc.|Stanley Black & Decker
RKLB|Rocket Lab USA Inc.|Rocket Lab
JOBY|Joby Aviation Inc.|Joby Aviation
ACHR|Archer Aviation Inc.|Archer Aviation
ASTS|AST SpaceMobile Inc.|AST SpaceMobile
LUNR|Intuitive Machines Inc.|Intuitive Machines
SPCE|Virgin Galactic Holdings Inc.|Virgin Galactic
# Utilities and power
NEE|NextEra Energy Inc.|NextEra
DUK|Duke Energy Corporation|Duke Energy
SO|Southern Company|Southern Company,Southern Co
D|Dominion Energy Inc.|Dominion Energy
AEP|American Electric Power Company Inc.|American Electric Power
EXC|Exelon Corporation|Exelon
SRE|Sempra|=Sempra
XEL|Xcel Energy Inc.|Xcel Energy
WEC|WEC Energy Group Inc.|WEC Energy
EIX|Edison International|Edison International
PCG|PG&E Corporation|PG&E
ETR|Entergy Corporation|Entergy
FE|FirstEnergy Corp.|FirstEnergy
PPL|PPL Corporation|
AEE|Ameren Corporation|Ameren
CNP|CenterPoint Energy Inc.|CenterPoint Energy
DTE|DTE Energy Company|DTE Energy
AES|AES Corporation|
VST|Vistra Corp.|Vistra
CEG|Constellation Energy Corporation|Constellation Energy
NRG|NRG Energy Inc.|NRG Energy
OKLO|Oklo Inc.|=Oklo
CCJ|Cameco Corporation|Cameco
# Materials and mining
APD|Air Products and Chemicals Inc.|Air Products
SHW|Sherwin-Williams Company|Sherwin-Williams
ECL|Ecolab Inc.|Ecolab
DD|DuPont de Nemours Inc.|DuPont
NUE|Nucor Corporation|Nucor
STLD|Steel Dynamics Inc.|Steel Dynamics
VMC|Vulcan Materials Company|Vulcan Materials
MLM|Martin Marietta Materials Inc.|Martin Marietta
PPG|PPG Industries Inc.|PPG Industries
IFF|International Flavors & Fragrances Inc.|International Flavors & Fragrances
CF|CF Industries Holdings Inc.|CF Industries
MOS|Mosaic Company|Mosaic Co
ALB|Albemarle Corporation|Albemarle
CLF|Cleveland-Cliffs Inc.|Cleveland-Cliffs
LYB|LyondellBasell Industries N.V.|LyondellBasell
CTVA|Corteva Inc.|Corteva
PKG|Packaging Corporation of America|Packaging Corp of America
AMCR|Amcor plc|Amcor
SCCO|Southern Copper Corporation|Southern Copper
RIO|Rio Tinto Group|Rio Tinto
BHP|BHP Group Limited|
VALE|Vale S.A.|Vale S.A.
AEM|Agnico Eagle Mines Limited|Agnico Eagle
WPM|Wheaton Precious Metals Corp.|Wheaton Precious Metals
FNV|Franco-Nevada Corporation|Franco-Nevada
KGC|Kinross Gold Corporation|Kinross
NTR|Nutrien Ltd.|Nutrien
# Real estate
PLD|Prologis Inc.|Prologis
CCI|Crown Castle Inc.|Crown Castle
EQIX|Equinix Inc.|Equinix
SPG|Simon Property Group Inc.|Simon Property
O|Realty Income Corporation|Realty Income
DLR|Digital Realty Trust Inc.|Digital Realty
VICI|VICI Properties Inc.|VICI Properties
AVB|AvalonBay Communities Inc.|AvalonBay
EQR|Equity Residential|=Equity Residential
IRM|Iron Mountain Inc.|=Iron Mountain
EXR|Extra Space Storage Inc.|Extra Space Storage
INVH|Invitation Homes Inc.|Invitation Homes
SBAC|SBA Communications Corporation|SBA Communications
WY|Weyerhaeuser Company|Weyerhaeuser
# Energy
EOG|EOG Resources Inc.|EOG Resources
DVN|Devon Energy Corporation|Devon Energy
MPC|Marathon Petroleum Corporation|Marathon Petroleum
PSX|Phillips 66|Phillips 66
VLO|Valero Energy Corporation|Valero
KMI|Kinder Morgan Inc.|Kinder Morgan
WMB|Williams Companies Inc.|Williams Companies
OKE|ONEOK Inc.|ONEOK
HAL|Halliburton Company|Halliburton
BKR|Baker Hughes Company|Baker Hughes
CTRA|Coterra Energy Inc.|Coterra
APA|APA Corporation|APA Corp
EQT|EQT Corporation|
TRGP|Targa Resources Corp.|Targa Resources
EPD|Enterprise Products Partners L.P.|Enterprise Products
ENB|Enbridge Inc.|Enbridge
CNQ|Canadian Natural Resources Limited|Canadian Natural Resources
SU|Suncor Energy Inc.|Suncor
PBR|Petróleo Brasileiro S.A. (Petrobras)|Petrobras
TTE|TotalEnergies SE|TotalEnergies
EQNR|Equinor ASA|Equinor
# Consumer staples
MDLZ|Mondelez International Inc.|Mondelez
KHC|Kraft Heinz Company|Kraft Heinz
GIS|General Mills Inc.|General Mills
HSY|Hershey Company|Hershey
SJM|J.M. Smucker Company|Smucker's,J.M. Smucker
CPB|Campbell's Company|Campbell's,Campbell Soup
HRL|Hormel Foods Corporation|Hormel
MKC|McCormick & Company Inc.|McCormick
CAG|Conagra Brands Inc.|Conagra
CL|Colgate-Palmolive Company|Colgate-Palmolive,Colgate
KMB|Kimberly-Clark Corporation|Kimberly-Clark
CHD|Church & Dwight Co. Inc.|Church & Dwight
CLX|Clorox Company|Clorox
EL|Estée Lauder Companies Inc.|Estée Lauder,Estee Lauder
KVUE|Kenvue Inc.|Kenvue
PM|Philip Morris International Inc.|Philip Morris
MO|Altria Group Inc.|Altria
STZ|Constellation Brands Inc.|Constellation Brands
TAP|Molson Coors Beverage Company|Molson Coors
BF.B|Brown-Forman Corporation|Brown-Forman
KDP|Keurig Dr Pepper Inc.|Keurig Dr Pepper
MNST|Monster Beverage Corporation|Monster Beverage
CELH|Celsius Holdings Inc.|Celsius Holdings
KR|Kroger Co.|Kroger
SYY|Sysco Corporation|Sysco
ADM|Archer-Daniels-Midland Company|Archer-Daniels-Midland,Archer Daniels Midland
BG|Bunge Global SA|=Bunge
TSN|Tyson Foods Inc.|Tyson Foods
DG|Dollar General Corporation|Dollar General
DLTR|Dollar Tree Inc.|Dollar Tree
ACI|Albertsons Companies Inc.|Albertsons
UL|Unilever plc|Unilever
DEO|Diageo plc|Diageo
BTI|British American Tobacco plc|British American Tobacco
BUD|Anheuser-Busch InBev SA/NV|AB InBev,Anheuser-Busch
TLRY|Tilray Brands Inc.|Tilray
CGC|Canopy Growth Corporation|Canopy Growth
SNDL|SNDL Inc.|
ACB|Aurora Cannabis Inc.|Aurora Cannabis
BYND|Beyond Meat Inc.|Beyond Meat
# Consumer discretionary, travel, leisure
TJX|TJX Companies Inc.|T.J. Maxx,TJ Maxx
ROST|Ross Stores Inc.|Ross Stores
BURL|Burlington Stores Inc.|Burlington Stores
BBY|Best Buy Co. Inc.|=Best Buy
AZO|AutoZone Inc.|AutoZone
ORLY|O'Reilly Automotive Inc.|O'Reilly Automotive
GPC|Genuine Parts Company|Genuine Parts
TSCO|Tractor Supply Company|Tractor Supply
ULTA|Ulta Beauty Inc.|Ulta Beauty
LULU|Lululemon Athletica Inc.|Lululemon
DECK|Deckers Outdoor Corporation|Deckers
CROX|Crocs Inc.|=Crocs
ONON|On Holding AG|On Holding
TPR|Tapestry Inc.|=Tapestry
VFC|V.F. Corporation|VF Corp
PVH|PVH Corp.|
UAA|Under Armour Inc.|Under Armour
LEVI|Levi Strauss & Co.|Levi Strauss,Levi's
BIRK|Birkenstock Holding plc|Birkenstock
HLT|Hilton Worldwide Holdings Inc.|=Hilton
MAR|Marriott International Inc.|Marriott
H|Hyatt Hotels Corporation|Hyatt
BKNG|Booking Holdings Inc.|Booking Holdings,Booking.com
EXPE|Expedia Group Inc.|Expedia
TRIP|Tripadvisor Inc.|Tripadvisor
RCL|Royal Caribbean Cruises Ltd.|Royal Caribbean
NCLH|Norwegian Cruise Line Holdings Ltd.|Norwegian Cruise Line
LVS|Las Vegas Sands Corp.|Las Vegas Sands
WYNN|Wynn Resorts Limited|Wynn Resorts
MGM|MGM Resorts International|MGM Resorts
CZR|Caesars Entertainment Inc.|Caesars Entertainment
DKNG|DraftKings Inc.|DraftKings
PENN|PENN Entertainment Inc.|Penn Entertainment
CMG|Chipotle Mexican Grill Inc.|Chipotle
YUM|Yum! Brands Inc.|Yum! Brands,Yum Brands,KFC,Taco Bell,Pizza Hut
DPZ|Domino's Pizza Inc.|Domino's
DRI|Darden Restaurants Inc.|Darden,Olive Garden
QSR|Restaurant Brands International Inc.|Restaurant Brands,Burger King,Tim Hortons
CAVA|CAVA Group Inc.|CAVA Group
SHAK|Shake Shack Inc.|Shake Shack
TXRH|Texas Roadhouse Inc.|Texas Roadhouse
DHI|D.R. Horton Inc.|D.R. Horton
LEN|Lennar Corporation|Lennar
PHM|PulteGroup Inc.|PulteGroup
NVR|NVR Inc.|
TOL|Toll Brothers Inc.|Toll Brothers
WHR|Whirlpool Corporation|=Whirlpool
GRMN|Garmin Ltd.|Garmin
HAS|Hasbro Inc.|Hasbro
PTON|Peloton Interactive Inc.|Peloton
FUBO|fuboTV Inc.|fuboTV
KOSS|Koss Corporation|
STLA|Stellantis N.V.|Stellantis
HMC|Honda Motor Co. Ltd.|Honda
LI|Li Auto Inc.|Li Auto
XPEV|XPeng Inc.|XPeng
# Healthcare
MDT|Medtronic plc|Medtronic
SYK|Stryker Corporation|Stryker
BSX|Boston Scientific Corporation|Boston Scientific
EW|Edwards Lifesciences Corporation|Edwards Lifesciences
ZBH|Zimmer Biomet Holdings Inc.|Zimmer Biomet
BDX|Becton Dickinson and Company|Becton Dickinson
BAX|Baxter International Inc.|Baxter International
IDXX|IDEXX Laboratories Inc.|IDEXX
IQV|IQVIA Holdings Inc.|IQVIA
A|Agilent Technologies Inc.|Agilent
MTD|Mettler-Toledo International Inc.|Mettler-Toledo
RMD|ResMed Inc.|ResMed
DXCM|DexCom Inc.|DexCom
PODD|Insulet Corporation|Insulet
ALGN|Align Technology Inc.|Align Technology,Invisalign
GEHC|GE HealthCare Technologies Inc.|GE HealthCare
LH|Labcorp Holdings Inc.|Labcorp
DGX|Quest Diagnostics Inc.|Quest Diagnostics
HUM|Humana Inc.|Humana
HCA|HCA Healthcare Inc.|HCA Healthcare
CAH|Cardinal Health Inc.|Cardinal Health
MCK|McKesson Corporation|McKesson
COR|Cencora Inc.|Cencora,AmerisourceBergen
ZTS|Zoetis Inc.|Zoetis
BIIB|Biogen Inc.|Biogen
ILMN|Illumina Inc.|Illumina
INCY|Incyte Corporation|Incyte
ALNY|Alnylam Pharmaceuticals Inc.|Alnylam
BNTX|BioNTech SE|BioNTech
AZN|AstraZeneca plc|AstraZeneca
GSK|GSK plc|
SNY|Sanofi|Sanofi
NVS|Novartis AG|Novartis
TAK|Takeda Pharmaceutical Company Limited|Takeda
TEVA|Teva Pharmaceutical Industries Limited|Teva Pharmaceutical,=Teva
VTRS|Viatris Inc.|Viatris
HIMS|Hims & Hers Health Inc.|Hims & Hers
NVAX|Novavax Inc.|Novavax
TEM|Tempus AI Inc.|Tempus AI
# Crypto miners and quantum / AI small caps (retail favourites)
RIOT|Riot Platforms Inc.|Riot Platforms,Riot Blockchain
CLSK|CleanSpark Inc.|CleanSpark
HUT|Hut 8 Corp.|Hut 8
IONQ|IonQ Inc.|IonQ
RGTI|Rigetti Computing Inc.|Rigetti
QBTS|D-Wave Quantum Inc.|D-Wave
QUBT|Quantum Computing Inc.|Quantum Computing Inc
SOUN|SoundHound AI Inc.|SoundHound
BBAI|BigBear.ai Holdings Inc.|BigBear.ai
CLOV|Clover Health Investments Corp.|Clover Health
PLUG|Plug Power Inc.|Plug Power
CHPT|ChargePoint Holdings Inc.|ChargePoint
BE|Bloom Energy Corporation|Bloom Energy
FSLR|First Solar Inc.|First Solar
ENPH|Enphase Energy Inc.|Enphase
SEDG|SolarEdge Technologies Inc.|SolarEdge
# Big foreign listings (ADRs and cross-listings)
RY|Royal Bank of Canada|Royal Bank of Canada
TD|Toronto-Dominion Bank|Toronto-Dominion,TD Bank
BMO|Bank of Montreal|Bank of Montreal
BNS|Bank of Nova Scotia|Scotiabank,Bank of Nova Scotia
CM|Canadian Imperial Bank of Commerce|CIBC
DB|Deutsche Bank AG|Deutsche Bank
ING|ING Groep N.V.|ING Groep
BCS|Barclays plc|Barclays
LYG|Lloyds Banking Group plc|Lloyds Banking,=Lloyds
NWG|NatWest Group plc|NatWest
BBVA|Banco Bilbao Vizcaya Argentaria S.A.|
MUFG|Mitsubishi UFJ Financial Group Inc.|Mitsubishi UFJ
SMFG|Sumitomo Mitsui Financial Group Inc.|Sumitomo Mitsui
HDB|HDFC Bank Limited|HDFC Bank
IBN|ICICI Bank Limited|ICICI Bank
ITUB|Itaú Unibanco Holding S.A.|Itaú Unibanco,Itau Unibanco
INFY|Infosys Limited|Infosys
ERIC|Telefonaktiebolaget LM Ericsson|Ericsson
PHG|Koninklijke Philips N.V.|=Philips
RELX|RELX plc|
NTES|NetEase Inc.|NetEase
TCOM|Trip.com Group Limited|Trip.com
BILI|Bilibili Inc.|Bilibili
TME|Tencent Music Entertainment Group|Tencent Music
YUMC|Yum China Holdings Inc.|Yum China
BEKE|KE Holdings Inc.|KE Holdings,Beike
ZTO|ZTO Express (Cayman) Inc.|ZTO Express
TCEHY|Tencent Holdings Ltd.|Tencent
NTDOY|Nintendo Co. Ltd.|Nintendo
CNI|Canadian National Railway Company|Canadian National
BN|Brookfield Corporation|Brookfield Corp
BAM|Brookfield Asset Management Ltd.|Brookfield Asset Management
TRI|Thomson Reuters Corporation|Thomson Reuters
MFC|Manulife Financial Corporation|Manulife
# ETFs (no aliases: fund names are rarely written out in headlines)
IVV|iShares Core S&P 500 ETF|
VUG|Vanguard Growth ETF|
VTV|Vanguard Value ETF|
VEA|Vanguard FTSE Developed Markets ETF|
VWO|Vanguard FTSE Emerging Markets ETF|
EFA|iShares MSCI EAFE ETF|
IEMG|iShares Core MSCI Emerging Markets ETF|
AGG|iShares Core U.S. Aggregate Bond ETF|
BND|Vanguard Total Bond Market ETF|
LQD|iShares iBoxx Investment Grade Corporate Bond ETF|
IEF|iShares 7-10 Year Treasury Bond ETF|
SHY|iShares 1-3 Year Treasury Bond ETF|
BIL|SPDR Bloomberg 1-3 Month T-Bill ETF|
SGOV|iShares 0-3 Month Treasury Bond ETF|
TMF|Direxion Daily 20+ Year Treasury Bull 3X Shares|
TBT|ProShares UltraShort 20+ Year Treasury|
XLK|Technology Select Sector SPDR Fund|
XLV|Health Care Select Sector SPDR Fund|
XLI|Industrial Select Sector SPDR Fund|
XLY|Consumer Discretionary Select Sector SPDR Fund|
XLP|Consumer Staples Select Sector SPDR Fund|
XLU|Utilities Select Sector SPDR Fund|
XLB|Materials Select Sector SPDR Fund|
XLRE|Real Estate Select Sector SPDR Fund|
XLC|Communication Services Select Sector SPDR Fund|
VGT|Vanguard Information Technology ETF|
XBI|SPDR S&P Biotech ETF|
IBB|iShares Biotechnology ETF|
SOXX|iShares Semiconductor ETF|
SOXL|Direxion Daily Semiconductor Bull 3X Shares|
SOXS|Direxion Daily Semiconductor Bear 3X Shares|
KRE|SPDR S&P Regional Banking ETF|
KBE|SPDR S&P Bank ETF|
XOP|SPDR S&P Oil & Gas Exploration & Production ETF|
XHB|SPDR S&P Homebuilders ETF|
ITB|iShares U.S. Home Construction ETF|
GDX|VanEck Gold Miners ETF|
GDXJ|VanEck Junior Gold Miners ETF|
IAU|iShares Gold Trust|
UNG|United States Natural Gas Fund|
VXX|iPath Series B S&P 500 VIX Short-Term Futures ETN|
UVXY|ProShares Ultra VIX Short-Term Futures ETF|
SPXL|Direxion Daily S&P 500 Bull 3X Shares|
SPXS|Direxion Daily S&P 500 Bear 3X Shares|
UPRO|ProShares UltraPro S&P500|
SH|ProShares Short S&P500|
SDS|ProShares UltraShort S&P500|
TNA|Direxion Daily Small Cap Bull 3X Shares|
TZA|Direxion Daily Small Cap Bear 3X Shares|
LABU|Direxion Daily S&P Biotech Bull 3X Shares|
SCHD|Schwab U.S. Dividend Equity ETF|
VIG|Vanguard Dividend Appreciation ETF|
VYM|Vanguard High Dividend Yield ETF|
JEPI|JPMorgan Equity Premium Income ETF|
JEPQ|JPMorgan Nasdaq Equity Premium Income ETF|
RSP|Invesco S&P 500 Equal Weight ETF|
QQQM|Invesco NASDAQ 100 ETF|
SPLG|SPDR Portfolio S&P 500 ETF|
MDY|SPDR S&P MidCap 400 ETF Trust|
IJH|iShares Core S&P Mid-Cap ETF|
IJR|iShares Core S&P Small-Cap ETF|
VNQ|Vanguard Real Estate ETF|
FXI|iShares China Large-Cap ETF|
KWEB|KraneShares CSI China Internet ETF|
EWZ|iShares MSCI Brazil ETF|
EWJ|iShares MSCI Japan ETF|
IBIT|iShares Bitcoin Trust ETF|
FBTC|Fidelity Wise Origin Bitcoin Fund|
GBTC|Grayscale Bitcoin Trust ETF|
ETHA|iShares Ethereum Trust ETF|
BITO|ProShares Bitcoin Strategy ETF|
"""

# Well-known tickers deliberately left out because the bare uppercase form is a common acronym or word in
# financial text and the tagger has no per-ticker "cashtag only" switch: Energy Transfer (ET: Eastern
# Time), Cheniere (LNG), Intercontinental Exchange (ICE), International Paper (IP), U.S. Bancorp (USB),
# CMS Energy (CMS: Medicare agency), Ingersoll Rand (IR: investor relations), Aflac (AFL: AFL-CIO), Dow Inc.
# (DOW: the Dow), Alcoa (AA) and BlackBerry (BB: credit ratings), Eversource (ES: E-mini futures), Con Ed
# (ED), PSEG (PEG: PEG ratio), Diamondback (FANG), NuScale (SMR), Centrus (LEU), Cenovus (CVE), Regions
# (RF), Centene (CNC), TE Connectivity (TEL), Samsara (IOT), American Tower (AMT: minimum tax), Public
# Storage (PSA), Ralph Lauren (RL: reinforcement learning), Vodafone (VOD), Canadian Pacific (CP: Canadian
# Press), Nokia (NOK: krone), Vanguard Total World (VT: Vermont), and word tickers such as KEY, FAST, WELL,
# BALL, POOL, OPEN, RACE, GOLD, ALLY, WING, GAP, PATH, JETS, BRO, RUN, CAR, PLAY.
_UNLISTED = (
    "ET LNG ICE IP USB CMS IR AFL DOW AA BB ES ED PEG FANG SMR LEU CVE RF CNC TEL IOT KEY FAST WELL BALL "
    "POOL OPEN RACE GOLD ALLY WING GAP PATH JETS BRO RUN CAR PLAY AMT PSA RL VOD CP NOK VT"
)
UNLISTED = frozenset(_UNLISTED.split())
_TICKER = re.compile(r"[A-Z]{1,5}(?:\.[A-Z])?\Z")


def build() -> dict[str, object]:
    entities = []
    owner: dict[str, str] = {}  # casefolded alias or ticker -> ticker, to catch one name on two companies
    for number, line in enumerate(TABLE.strip().splitlines(), start=1):
        if not line.strip() or line.startswith("#"):
            continue
        ticker, name, aliases = line.split("|")
        if not _TICKER.match(ticker) or ticker in UNLISTED:
            raise ValueError(f"TABLE line {number}: bad or unlisted ticker {ticker!r}")
        items: list[object] = [f"${ticker}"]
        for key in (ticker.casefold(), *(a.lstrip("=").casefold() for a in filter(None, aliases.split(",")))):
            if owner.setdefault(key, ticker) != ticker:
                raise ValueError(f"TABLE line {number}: {key!r} of {ticker} already names {owner[key]}")
        for alias in filter(None, aliases.split(",")):
            if alias.startswith("="):
                items.append({"alias": alias[1:], "case_sensitive": True})
            else:
                items.append(alias)
        entities.append({"ticker": ticker, "name": name, "aliases": items})
    return {"version": 1, "entities": entities}


if __name__ == "__main__":
    out = Path(__file__).resolve().parents[1] / "kb_sync" / "data" / "entities.json"
    data = build()
    out.write_text(json.dumps(data, indent=1) + "\n", encoding="utf-8")
    print(f"wrote {out} ({len(data['entities'])} entities)")
