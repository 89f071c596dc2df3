"""Writes kb_sync/data/default_kb.jsonl from the tables below (python scripts/make_default_kb.py).

Every sentence here was written for finsignal; none is taken from the training data. Sentiment is the
market reader's: a beat is positive, a miss negative, a plain factual report neutral.
"""

from __future__ import annotations

import json
import re
from pathlib import Path

AUTHOR = "finsignal-default"
SENT = {"+": "positive", "-": "negative", "=": "neutral", ".": None}

# "## Topic | group" starts a section; then "<s> text" where s is + - = (sentiment) or . (topic only).
EXEMPLARS = """
## Analyst Update | equities
+ Analysts upgrade the stock to buy and lift their price target to $140.
+ Broker raises its rating to outperform, citing accelerating cloud demand.
+ Top-ranked analyst adds the chipmaker to the firm's conviction buy list.
+ Price target raised to $95 from $80 after a strong quarter; rating kept at overweight.
+ Analyst says the selloff is overdone and moves the shares to a strong buy.
- Bank downgrades the retailer to sell on weakening consumer demand.
- Analyst cuts the price target to $32, sees margin pressure through next year.
- Broker moves the stock to underweight, saying the valuation is stretched.
- Research firm slashes estimates after the guidance cut and drops its buy rating.
- Two more brokers downgrade the airline after the fuel cost warning.
= Analyst initiates coverage with a neutral rating and a $50 price target.
= Broker reiterates its hold rating ahead of next week's earnings.
= Research house transfers coverage of the bank to a new analyst.
= Analyst keeps an equal-weight rating, says the shares are fairly valued.

## Fed | Central Banks | rates
+ Fed signals rate cuts could start as soon as next meeting, lifting stocks.
+ Central bank pauses its hiking cycle as inflation cools faster than expected.
+ ECB hints at easing as price pressures fade across the euro area.
+ Dovish Fed minutes show officials are comfortable with fewer hikes.
- Fed raises rates by 75 basis points and warns more hikes are coming.
- Hawkish Fed chair says rates will stay higher for longer, sending yields up.
- Bank of England surprises with a bigger-than-expected rate hike.
- Central bank warns inflation is sticky, pushing back against rate-cut bets.
= Fed holds rates steady, in line with expectations.
= FOMC minutes due at 2 p.m. Eastern; markets price two cuts this year.
= Fed governor to speak on the economic outlook at a conference on Thursday.
= Bank of Japan keeps its yield curve policy unchanged.
= ECB publishes the account of its latest monetary policy meeting.

## Company | Product News | corporate
+ Company unveils a new AI chip that doubles performance per watt.
+ Automaker wins a multibillion-dollar battery supply contract.
+ Drugmaker's new therapy receives FDA approval ahead of schedule.
+ Retailer says its new loyalty program signed up 10 million members in a month.
+ Software maker lands its largest government contract to date.
- Automaker recalls 500,000 vehicles over a faulty brake sensor.
- Plant fire halts production at the company's largest factory.
- Company delays the launch of its flagship phone to next year.
- Cyberattack disrupts the airline's booking system for a second day.
- Regulators reject the drugmaker's application for its lead candidate.
= Company to open a new distribution center in Ohio next spring.
= Firm announces a partnership to integrate its payments app with a major retailer.
= Company will present at an industry conference next Tuesday.
= Retailer updates its return policy for the holiday season.

## Treasuries | Corporate Debt | credit
+ Company upgraded to investment grade by a major rating agency.
+ Strong demand lets the issuer tighten pricing on its new bond deal.
+ Credit spreads narrow to their tightest level in two years.
+ Company refinances its 2026 notes, pushing out its debt maturities.
- Rating agency cuts the company's credit rating to junk.
- Company misses a coupon payment, bonds fall to 40 cents on the dollar.
- Treasury yields jump after a weak auction draws little demand.
- High-yield spreads widen sharply as default fears return.
- Company warns it may breach its debt covenants.
= Treasury to auction $42 billion of 10-year notes on Wednesday.
= Company prices $1.5 billion of senior unsecured notes due 2034.
= 10-year Treasury yield little changed at 4.2% ahead of the jobs report.
= Outlook on the issuer's rating revised to stable from positive.

## Dividend | equities
+ Company raises its quarterly dividend by 10% and adds a $5 billion buyback.
+ Board declares a special dividend of $2 per share.
+ Utility lifts its payout for the 25th straight year.
+ Company reinstates its dividend after a two-year pause.
- Company cuts its dividend by half to preserve cash.
- Board suspends the quarterly dividend amid falling profits.
- REIT slashes its payout as occupancy drops.
- Dividend cut wipes out the stock's main attraction, income investors flee.
= Board declares a regular quarterly dividend of $0.24 per share.
= Dividend is payable on March 15 to holders of record on March 1.
= Stock goes ex-dividend on Friday.
= Company maintains its quarterly dividend at $0.50.

## Earnings | equities
+ Company beats estimates on revenue and earnings, raises full-year guidance.
+ Quarterly profit doubles on record revenue; shares jump after hours.
+ Retailer posts stronger-than-expected same-store sales and lifts its outlook.
+ Chipmaker's results top forecasts as data center sales surge.
+ EPS of $2.10 tops the $1.85 consensus estimate.
- Company misses estimates and cuts its full-year outlook.
- Profit warning: company expects a loss for the quarter.
- Revenue falls short of forecasts as demand weakens; shares slide after hours.
- Company posts a wider-than-expected loss and withdraws guidance.
- Margins shrink for a third straight quarter on higher costs.
= Company to report fourth-quarter results after the close on Thursday.
= Earnings call scheduled for 8:30 a.m. Eastern.
= Company reports quarterly revenue of $4.2 billion, in line with estimates.
= Consensus expects earnings of $1.12 per share on revenue of $3.4 billion.

## Energy | Oil | commodities
+ Oil major reports record output from its new offshore field.
+ Crude rallies as OPEC+ agrees deeper production cuts, lifting energy shares.
+ Refiner's margins jump on strong summer fuel demand.
+ Driller raises its production forecast after a strong quarter.
- Oil slumps 6% as demand fears grow, dragging energy stocks lower.
- Pipeline leak forces the operator to shut a key line.
- Energy company writes down $3 billion of oil and gas assets.
- Natural gas prices crash on a mild winter forecast, hurting producers.
= OPEC+ meets on Sunday to discuss output policy.
= Weekly inventory data shows crude stocks little changed.
= Brent trades near $82 a barrel in early Asian trading.
= US rig count unchanged at 620 this week.

## Financials | credit
+ Bank's net interest income beats forecasts as loan growth accelerates.
+ Lender passes the stress test comfortably and boosts its buyback.
+ Investment banking fees rebound sharply at the big banks.
+ Insurer's underwriting profit rises as catastrophe losses ease.
- Regional bank shares plunge on deposit outflows.
- Bank sets aside $2 billion more for bad loans as credit quality worsens.
- Lender takes a large loss on commercial real estate loans.
- Trading revenue drops sharply at the investment bank.
= Bank to hold its investor day in New York next month.
= Lender completes the integration of the acquired branches.
= Fed releases stress test scenarios for large banks.
= Bank reports deposits of $310 billion at quarter end.

## Currencies | fx
+ Dollar strengthens broadly after upbeat jobs data.
+ Yen rebounds as intervention fears grip traders.
+ Emerging market currencies rally as risk appetite returns.
+ Euro climbs to a six-month high on hawkish ECB remarks.
- Pound tumbles to a record low after the budget shock.
- Lira slides to a new low as inflation accelerates.
- Dollar slumps after soft inflation data undercuts rate expectations.
- Peso plunges as the central bank unexpectedly cuts rates.
= EUR/USD trades at 1.08 in quiet Asian session.
= Dollar index little changed ahead of the Fed decision.
= Yuan fixing set at 7.12 per dollar.
= Traders await the central bank's currency reserve data.

## General News | Opinion | macro
+ Opinion: the bull market still has room to run.
+ Why this could be the best time in a decade to buy bank stocks.
+ Column: the economy is more resilient than pessimists admit.
- Opinion: a recession is coming and stocks have not priced it in.
- Column: the housing market is headed for a painful correction.
- Why investors should brace for a lost decade in stocks.
= Five things to know before the market opens.
= Weekly podcast: what the latest data means for your portfolio.
= A look at the week ahead for markets.
= Explainer: how bond ladders work.
. Newsletter: the morning briefing for investors.

## Gold | Metals | Materials | commodities
+ Gold hits a record high as investors seek safety.
+ Copper rallies on Chinese stimulus hopes, lifting miners.
+ Miner raises its output forecast after a rich new discovery.
+ Lithium prices rebound, boosting battery-metals producers.
- Gold falls below $1,900 as yields rise.
- Copper slides on weak factory data from China.
- Miner halts operations after a deadly accident.
- Steelmaker warns of lower prices and cuts output.
= Gold steady near $2,000 an ounce ahead of inflation data.
= Silver little changed in thin holiday trading.
= Miner publishes its annual reserves and resources statement.
= Aluminium inventories in exchange warehouses hold steady.

## IPO | equities
+ IPO prices above the range and shares soar 40% in their debut.
+ Strong demand lets the startup upsize its IPO.
+ Chip designer's shares double on their first day of trading.
- IPO prices below range as investor demand fades.
- Newly listed shares fall 25% in their market debut.
- Company postpones its IPO, citing market volatility.
- Startup pulls its listing plans after a valuation cut.
= Company files confidentially for a US initial public offering.
= IPO expected to price on Wednesday, trading under the ticker NEWC.
= Startup sets a range of $18 to $20 per share for its offering.
= Lock-up period for early investors ends next month.

## Legal | Regulation | regulation
+ Court dismisses the shareholder lawsuit against the company.
+ Company wins the patent case and is awarded $500 million.
+ Regulators approve the merger without conditions.
+ Antitrust probe closed with no action against the company.
- SEC charges the company's former executives with accounting fraud.
- Company fined $1.2 billion by EU regulators for antitrust violations.
- DOJ sues to block the merger.
- Jury finds the company liable and orders $2 billion in damages.
- Company under federal investigation over its sales practices.
= Supreme Court to hear arguments in the case next term.
= Regulator proposes new disclosure rules for climate risk.
= Company files its response to the lawsuit in federal court.
= Hearing on the settlement scheduled for next month.

## M&A | Investments | corporate
+ Company agrees to be acquired at a 45% premium, shares soar.
+ Activist investor takes a stake and pushes for a sale, stock jumps.
+ Conglomerate to spin off its fast-growing unit, unlocking value.
+ Rival bid sparks a bidding war for the target company.
- Merger collapses after regulators object; target shares plunge.
- Acquirer's shares drop as investors balk at the price of the deal.
- Company writes down the value of its acquisition by $4 billion.
- Buyer walks away from the takeover, citing financing problems.
= Company completes its previously announced acquisition.
= Firm in early talks to buy a software startup, sources say.
= Private equity firm raises a $10 billion fund.
= Shareholders vote on the merger next Thursday.

## Macro | macro
+ Jobs report beats expectations as payrolls rise by 300,000.
+ Inflation cools more than expected, raising hopes of rate cuts.
+ GDP grows 3.1%, beating forecasts.
+ Consumer confidence jumps to a two-year high.
- Unemployment rate jumps to 4.5%, raising recession fears.
- Inflation comes in hotter than expected for a third month.
- Economy contracts in the second quarter.
- Factory activity shrinks at the fastest pace in three years.
- Retail sales fall unexpectedly as consumers pull back.
= CPI data due Tuesday at 8:30 a.m.
= Economists expect payrolls to rise by 180,000 in March.
= Weekly jobless claims little changed at 220,000.
= PMI index comes in at 50.1, in line with forecasts.

## Markets | equities
+ Stocks rally to record highs as tech leads gains.
+ Dow jumps 500 points on cooling inflation.
+ Small caps surge as rate-cut bets grow.
+ Global equities rebound after last week's selloff.
- Stocks tumble as bond yields surge.
- Nasdaq sinks 3% in the worst day since March.
- Global selloff deepens as recession fears mount.
- Volatility spikes as the S&P 500 drops for a fifth straight day.
= Stock futures flat ahead of the jobs report.
= S&P 500 ends little changed in quiet trading.
= Markets closed Monday for the holiday.
= Trading volume light ahead of the long weekend.

## Politics | macro
+ Congress reaches a deal to raise the debt ceiling, averting default.
+ Trade talks make progress, easing tariff fears.
+ Bipartisan infrastructure bill passes, boosting construction stocks.
- Government shutdown looms as budget talks collapse.
- New tariffs on imports spark fears of a trade war.
- Sanctions escalate as tensions rise between the two countries.
- Political crisis deepens as the prime minister resigns.
= Senate to vote on the spending bill next week.
= President to deliver a speech on the economy Thursday.
= Election results expected late Tuesday night.
= Lawmakers hold hearings on the tax proposal.

## Personnel Change | corporate
+ Company names a respected industry veteran as its new CEO, shares rise.
+ Founder returns as chief executive, stock jumps.
+ Activist-backed turnaround expert joins the board.
- CEO resigns abruptly, shares fall.
- CFO departs amid an accounting review.
- Company fires its chief executive after an investigation into misconduct.
- Key executives leave the company in a management shake-up.
= Company appoints a new chief financial officer effective next month.
= Chief operating officer to retire at year end as planned.
= Board names a new independent director.
= Company promotes its head of sales to president.

## Stock Commentary | equities
+ Three reasons this dividend stock is a buy now.
+ This chip stock could double in the next two years.
+ Why the pullback in the stock is a buying opportunity.
+ Bullish setup: the shares broke out above resistance on heavy volume.
- Why this stock could fall another 30%.
- Avoid this retailer: the balance sheet is deteriorating.
- Short seller says the company's shares are worth half their price.
- Bearish chart: the stock broke below its 200-day moving average.
= Is the stock a buy, sell or hold? What analysts think.
= How the company makes money: a look at its business segments.
= Stock comparison: two streaming names side by side.
= What to watch when the company reports next week.

## Stock Movement | equities
+ Shares surge 20% to an all-time high.
+ Stock jumps premarket after the upbeat update.
+ Shares climb for a sixth straight session.
+ Stock soars on heavy volume as short sellers cover.
- Shares plunge 30% to a 52-week low.
- Stock sinks after hours following the announcement.
- Shares slide for a fifth straight day.
- Stock halted after falling 15% in minutes.
= Shares unchanged in premarket trading.
= Stock trades flat at midday.
= Shares among the most active on the exchange today.
= Stock opens at $42.10.
"""

# Terms and phrases: "<s> <topic or -> | <group> | <weight> | text"; "-" as topic means sentiment only.
TERMS = """
+ Earnings | equities | 2.0 | beat estimates
+ Earnings | equities | 2.0 | tops estimates
+ Earnings | equities | 2.0 | raised guidance
+ Earnings | equities | 2.0 | record revenue
+ Earnings | equities | 1.5 | better-than-expected
- Earnings | equities | 2.0 | misses estimates
- Earnings | equities | 2.5 | guidance cut
- Earnings | equities | 2.5 | profit warning
- Earnings | equities | 2.0 | withdraws guidance
- Earnings | equities | 1.5 | worse-than-expected
= Earnings | equities | 1.0 | to report results
= Earnings | equities | 1.0 | earnings call
+ Analyst Update | equities | 2.0 | upgrade to buy
+ Analyst Update | equities | 1.5 | price target raised
+ Analyst Update | equities | 1.5 | upgrades to outperform
- Analyst Update | equities | 2.0 | downgrade
- Analyst Update | equities | 2.0 | downgrade to sell
- Analyst Update | equities | 1.5 | price target cut
= Analyst Update | equities | 1.0 | initiates coverage
= Analyst Update | equities | 1.0 | reiterates hold
- Fed | Central Banks | rates | 1.5 | rate hike
+ Fed | Central Banks | rates | 1.5 | rate cut
- Fed | Central Banks | rates | 1.5 | hawkish
+ Fed | Central Banks | rates | 1.5 | dovish
= Fed | Central Banks | rates | 1.0 | FOMC
= Fed | Central Banks | rates | 1.0 | basis points
+ Dividend | equities | 2.0 | dividend increase
+ Dividend | equities | 2.0 | special dividend
- Dividend | equities | 2.5 | dividend cut
- Dividend | equities | 2.5 | suspends dividend
= Dividend | equities | 1.0 | ex-dividend
= Dividend | equities | 1.0 | holders of record
- Treasuries | Corporate Debt | credit | 3.0 | default
- Treasuries | Corporate Debt | credit | 3.0 | chapter 11
- Treasuries | Corporate Debt | credit | 2.5 | downgraded to junk
- Treasuries | Corporate Debt | credit | 2.0 | missed coupon payment
- Treasuries | Corporate Debt | credit | 2.0 | covenant breach
+ Treasuries | Corporate Debt | credit | 2.0 | upgraded to investment grade
= Treasuries | Corporate Debt | credit | 1.0 | Treasury auction
= Treasuries | Corporate Debt | credit | 1.0 | senior notes
- Financials | credit | 2.5 | margin call
- Financials | credit | 2.0 | bank run
- Financials | credit | 2.0 | deposit outflows
- Financials | credit | 1.5 | loan loss provisions
+ Financials | credit | 1.5 | passes stress test
- Legal | Regulation | regulation | 2.0 | SEC charges
- Legal | Regulation | regulation | 2.0 | class action lawsuit
- Legal | Regulation | regulation | 2.0 | antitrust fine
- Legal | Regulation | regulation | 2.0 | accounting fraud
+ Legal | Regulation | regulation | 1.5 | lawsuit dismissed
+ Legal | Regulation | regulation | 1.5 | regulatory approval
+ M&A | Investments | corporate | 2.0 | takeover premium
+ M&A | Investments | corporate | 1.5 | agreed to be acquired
- M&A | Investments | corporate | 2.0 | deal collapses
- M&A | Investments | corporate | 1.5 | goodwill impairment
= M&A | Investments | corporate | 1.0 | completes acquisition
= M&A | Investments | corporate | 1.0 | definitive agreement
+ IPO | equities | 1.5 | prices above range
- IPO | equities | 1.5 | prices below range
- IPO | equities | 1.5 | postpones IPO
= IPO | equities | 1.0 | files for IPO
= IPO | equities | 1.0 | lock-up expiry
- Personnel Change | corporate | 2.0 | CEO resigns
- Personnel Change | corporate | 1.5 | abrupt departure
= Personnel Change | corporate | 1.0 | appoints CEO
= Personnel Change | corporate | 1.0 | to step down at year end
- Macro | macro | 2.0 | recession fears
- Macro | macro | 1.5 | hotter-than-expected inflation
+ Macro | macro | 1.5 | inflation cools
+ Macro | macro | 1.5 | payrolls beat
= Macro | macro | 1.0 | nonfarm payrolls
= Macro | macro | 1.0 | CPI
- Energy | Oil | commodities | 1.5 | oil slump
+ Energy | Oil | commodities | 1.5 | OPEC+ output cut
= Energy | Oil | commodities | 1.0 | crude inventories
= Energy | Oil | commodities | 1.0 | barrels per day
+ Gold | Metals | Materials | commodities | 1.5 | gold hits record
= Gold | Metals | Materials | commodities | 1.0 | per ounce
- Currencies | fx | 1.5 | currency plunges to record low
= Currencies | fx | 1.0 | dollar index
= Currencies | fx | 1.0 | EUR/USD
- Politics | macro | 1.5 | government shutdown
- Politics | macro | 1.5 | trade war
= Politics | macro | 1.0 | Senate vote
- Company | Product News | corporate | 2.0 | recall
- Company | Product News | corporate | 1.5 | production halt
+ Company | Product News | corporate | 1.5 | FDA approval
+ Company | Product News | corporate | 1.5 | wins contract
+ Stock Movement | equities | 1.5 | shares surge
+ Stock Movement | equities | 1.5 | all-time high
- Stock Movement | equities | 1.5 | shares plunge
- Stock Movement | equities | 1.5 | 52-week low
+ Markets | equities | 1.5 | stocks rally
- Markets | equities | 1.5 | selloff
+ Stock Commentary | equities | 1.0 | buying opportunity
- Stock Commentary | equities | 1.0 | short seller report
+ - | equities | 1.0 | bullish
- - | equities | 1.0 | bearish
+ - | equities | 1.0 | soars
- - | equities | 1.0 | tumbles
- - | credit | 2.0 | bankruptcy
- - | credit | 2.0 | insolvency
- - | corporate | 1.5 | layoffs
- - | corporate | 1.5 | writedown
+ - | corporate | 1.5 | buyback
+ - | equities | 1.0 | outperform
- - | equities | 1.0 | underperform
= - | equities | 0.5 | unchanged
= - | equities | 0.5 | in line with expectations
+ - | crypto | 1.0 | bitcoin rallies
- - | crypto | 1.5 | crypto exchange halts withdrawals
"""


def _slug(text: str) -> str:
    return re.sub(r"[^a-z0-9]+", "_", text.lower()).strip("_")[:40]


def build() -> list[dict[str, object]]:
    points: list[dict[str, object]] = []
    topic = group = ""
    for line in EXEMPLARS.strip().splitlines():
        if not line.strip():
            continue
        if line.startswith("## "):
            *topic_parts, group = (p.strip() for p in line[3:].split("|"))
            topic = " | ".join(topic_parts)
            count = 0
            continue
        count += 1
        points.append(
            {
                "id": f"default:ex:{_slug(topic)}:{count}",
                "kind": "exemplar",
                "text": line[2:].strip(),
                "topic": topic,
                "sentiment": SENT[line[0]],
                "weight": 1.0,
                "group": group,
                "author": AUTHOR,
            }
        )
    for line in TERMS.strip().splitlines():
        sentiment = SENT[line[0]]
        *topic_parts, group, weight, text = (p.strip() for p in line[2:].split("|"))
        term_topic = " | ".join(topic_parts)
        points.append(
            {
                "id": f"default:term:{_slug(text)}",
                "kind": "phrase" if " " in text else "term",
                "text": text,
                "topic": None if term_topic == "-" else term_topic,
                "sentiment": sentiment,
                "weight": float(weight),
                "group": group.strip(),
                "author": AUTHOR,
            }
        )
    return points


if __name__ == "__main__":
    out = Path(__file__).resolve().parents[1] / "kb_sync" / "data" / "default_kb.jsonl"
    # The hand-written starter points stay (tests and docs refer to their ids); ours follow them.
    kept = [line for line in out.read_text(encoding="utf-8").splitlines() if '"id": "starter:' in line]
    lines = kept + [json.dumps(p, ensure_ascii=False) for p in build()]
    out.write_text("\n".join(lines) + "\n", encoding="utf-8")
    print(f"wrote {len(lines)} points to {out}")
