/* Plays the seed's quick-start scenario through the engine and prints the accounts: two traders
 * open accounts, deposit, cross orders on CFFEX.IF2501, one closes with a profit, and the day is
 * settled. It shows the engine at work until the server binary wraps it. */
#include "engine/engine.h"

#include <stdio.h>
#include <string.h>

static int64_t demo_clock_ns = 1735783200000000000LL;

static int run(engine *e, command *c, const char *what) {
    engine_result r;
    c->ts_ns = (demo_clock_ns += 1000000000LL);
    int rc = engine_apply(e, c, &r);
    if (rc != QAEX_OK)
        printf("  %-44s -> error %d: %s\n", what, rc, r.message);
    else if (r.order != SLOT_NONE)
        printf("  %-44s -> %s %s\n", what, engine_order_at(e, r.order)->order_id,
               order_status_name(engine_order_at(e, r.order)->status));
    else
        printf("  %-44s -> ok %s\n", what, r.txn_id);
    return rc;
}

static void place_order(engine *e, const char *acc, direction d, offset o, double price,
                        int64_t vol) {
    command c;
    memset(&c, 0, sizeof c);
    c.type = CMD_ORDER_INSERT;
    snprintf(c.u.order.account_id, sizeof c.u.order.account_id, "%s", acc);
    snprintf(c.u.order.instrument_id, sizeof c.u.order.instrument_id, "IF2501");
    c.u.order.direction = d;
    c.u.order.offset = o;
    c.u.order.limit_price = price;
    c.u.order.volume = vol;
    char what[96];
    snprintf(what, sizeof what, "%s %s %s IF2501 %lld @ %.1f", acc, direction_name(d),
             offset_name(o), (long long)vol, price);
    run(e, &c, what);
}

static void print_account(const engine *e, const char *id) {
    const account *a = engine_account_find(e, id);
    account_view v;
    engine_account_view(e, a, &v);
    printf("  %-8s balance %14.2f  available %14.2f  margin %12.2f  close_profit %10.2f  "
           "commission %8.2f  risk %.4f\n",
           id, v.balance, v.available, v.margin, a->close_profit, a->commission, v.risk_ratio);
    for (uint32_t i = 0;; i++) {
        const position *p = engine_account_position(e, a, i);
        if (p == NULL) break;
        position_view pv;
        engine_position_view(e, p, &pv);
        if (pv.volume_long == 0 && pv.volume_short == 0) continue;
        printf("           %s long %lld @ %.2f  short %lld @ %.2f  position profit %.2f\n",
               engine_instrument_of(e, p->instrument)->spec.instrument_id,
               (long long)pv.volume_long, pv.open_price_long, (long long)pv.volume_short,
               pv.open_price_short, pv.position_profit);
    }
}

int main(void) {
    engine_config cfg;
    engine_config_default(&cfg);
    engine *e = engine_create(&cfg);
    if (e == NULL) {
        fprintf(stderr, "out of memory\n");
        return 1;
    }
    instrument_spec specs[8];
    size_t n = engine_default_instruments(specs, 8);
    command c;
    printf("QAExchange-C engine demo (trading day %s)\n\nInstruments:\n", engine_trading_day(e));
    for (size_t i = 0; i < n; i++) {
        memset(&c, 0, sizeof c);
        c.type = CMD_INSTRUMENT_ADD;
        c.u.instrument.spec = specs[i];
        run(e, &c, specs[i].instrument_id);
    }
    printf("\nAccounts:\n");
    const char *users[] = {"demo_user", "user_two"};
    for (int i = 0; i < 2; i++) {
        memset(&c, 0, sizeof c);
        c.type = CMD_ACCOUNT_OPEN;
        snprintf(c.u.account_open.account_id, sizeof c.u.account_open.account_id, "%s", users[i]);
        c.u.account_open.init_cash = 1000000.0;
        run(e, &c, users[i]);
    }
    memset(&c, 0, sizeof c);
    c.type = CMD_DEPOSIT;
    snprintf(c.u.transfer.account_id, sizeof c.u.transfer.account_id, "demo_user");
    c.u.transfer.amount = 500000.0;
    run(e, &c, "deposit 500000 to demo_user");

    printf("\nTrading:\n");
    place_order(e, "demo_user", DIR_BUY, OFFSET_OPEN, 3800.0, 2);
    place_order(e, "user_two", DIR_SELL, OFFSET_OPEN, 3800.0, 1);
    place_order(e, "user_two", DIR_SELL, OFFSET_OPEN, 3799.8, 1);
    place_order(e, "user_two", DIR_BUY, OFFSET_CLOSE, 3815.0, 2);
    place_order(e, "demo_user", DIR_SELL, OFFSET_CLOSE, 3815.0, 1);
    place_order(e, "demo_user", DIR_SELL, OFFSET_CLOSE, 3900.0, 5);
    printf("\nAfter trading:\n");
    print_account(e, "demo_user");
    print_account(e, "user_two");

    printf("\nSettlement:\n");
    memset(&c, 0, sizeof c);
    c.type = CMD_SETTLEMENT_SET_PRICE;
    snprintf(c.u.settlement_price.instrument_id, sizeof c.u.settlement_price.instrument_id,
             "IF2501");
    c.u.settlement_price.price = 3810.0;
    run(e, &c, "set settlement price IF2501 3810.0");
    memset(&c, 0, sizeof c);
    c.type = CMD_SETTLEMENT_EXECUTE;
    run(e, &c, "execute settlement");
    const settlement_result *sr = engine_settlement_at(e, 0);
    printf("  settled %s: %u accounts, commission %.2f, profit %.2f, force-closed %u\n",
           sr->settlement_date, sr->settled_accounts, sr->total_commission, sr->total_profit,
           sr->force_closed_count);
    printf("\nAfter settlement (trading day %s):\n", engine_trading_day(e));
    print_account(e, "demo_user");
    print_account(e, "user_two");
    printf("\nstate hash %016llx\n", (unsigned long long)engine_state_hash(e));
    engine_destroy(e);
    return 0;
}
