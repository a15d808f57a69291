/*
 * simulate_report.c - a comparison's regret curves as CSV and as an SVG
 * plot, written here rather than through a plotting dependency.
 */
#include <math.h>
#include <stdbool.h>
#include <string.h>

#include "simulate.h"

/* ---- CSV --------------------------------------------------------------- */

/* RFC 4180: quote a field holding a comma, a quote or a line break. */
static void csv_field(FILE *out, const char *s)
{
    if (!strpbrk(s, ",\"\r\n")) {
        fputs(s, out);
        return;
    }
    fputc('"', out);
    for (; *s; s++) {
        if (*s == '"')
            fputc('"', out);
        fputc(*s, out);
    }
    fputc('"', out);
}

int sim_write_csv(FILE *out, const sim_report *report)
{
    const sim_results *r = report->results;
    double rate = sim_lai_robbins_rate(report->plan->bandit);
    fputs("policy,step,regret_mean,regret_ci95_low,regret_ci95_high,lai_robbins_bound\n", out);
    for (size_t p = 0; p < r->n_policies; p++) {
        const sim_policy_result *pr = &r->policies[p];
        for (size_t c = 0; c < r->n_checkpoints; c++) {
            uint64_t t = r->checkpoints[c];
            csv_field(out, report->labels[p]);
            fprintf(out, ",%llu,%.9g,%.9g,%.9g,%.9g\n", (unsigned long long)t,
                    pr->curve_mean[c], pr->curve_lo[c], pr->curve_hi[c], rate * log((double)t));
        }
    }
    return ferror(out) ? -1 : 0;
}

/* ---- SVG --------------------------------------------------------------- */

static void xml_text(FILE *out, const char *s)
{
    for (; *s; s++) {
        switch (*s) {
        case '<': fputs("&lt;", out); break;
        case '>': fputs("&gt;", out); break;
        case '&': fputs("&amp;", out); break;
        case '"': fputs("&quot;", out); break;
        default: fputc(*s, out);
        }
    }
}

/* A tick spacing of 1, 2 or 5 times a power of ten giving about n ticks. */
static double nice_step(double range, int n)
{
    if (!(range > 0))
        return 1;
    double raw = range / n;
    double power = pow(10, floor(log10(raw)));
    double f = raw / power;
    return (f < 1.5 ? 1 : f < 3.5 ? 2 : f < 7.5 ? 5 : 10) * power;
}

/* Tick labels without trailing zeros: 2000, 0.5, 1e+06. */
static void tick_label(char *buf, size_t size, double v)
{
    snprintf(buf, size, "%.6g", fabs(v) < 1e-12 ? 0.0 : v);
}

/* Distinct colours that stay distinct for the colour-blind (Okabe & Ito). */
static const char *const palette[] = {"#0072B2", "#D55E00", "#009E73", "#CC79A7",
                                      "#E69F00", "#56B4E9", "#000000", "#F0E442"};
#define N_PALETTE (sizeof palette / sizeof palette[0])

typedef struct plot_frame {
    double left, top, width, height; /* plot area in pixels */
    double x_max, y_max;             /* data range: [0, x_max] x [0, y_max] */
} plot_frame;

static double px(const plot_frame *f, double x)
{
    return f->left + f->width * x / f->x_max;
}

static double py(const plot_frame *f, double y)
{
    return f->top + f->height * (1 - y / f->y_max);
}

static void draw_axes(FILE *out, const plot_frame *f)
{
    char label[64];
    double xs = nice_step(f->x_max, 6), ys = nice_step(f->y_max, 6);
    fputs("<g font-size=\"12\" fill=\"#333\">\n", out);
    for (double y = 0; y <= f->y_max * (1 + 1e-9); y += ys) {
        tick_label(label, sizeof label, y);
        fprintf(out,
                "<line x1=\"%.1f\" y1=\"%.1f\" x2=\"%.1f\" y2=\"%.1f\" stroke=\"#ddd\"/>\n"
                "<text x=\"%.1f\" y=\"%.1f\" text-anchor=\"end\">%s</text>\n",
                f->left, py(f, y), f->left + f->width, py(f, y), f->left - 6, py(f, y) + 4,
                label);
    }
    for (double x = 0; x <= f->x_max * (1 + 1e-9); x += xs) {
        tick_label(label, sizeof label, x);
        fprintf(out,
                "<line x1=\"%.1f\" y1=\"%.1f\" x2=\"%.1f\" y2=\"%.1f\" stroke=\"#ddd\"/>\n"
                "<text x=\"%.1f\" y=\"%.1f\" text-anchor=\"middle\">%s</text>\n",
                px(f, x), f->top, px(f, x), f->top + f->height, px(f, x),
                f->top + f->height + 18, label);
    }
    fprintf(out,
            "<rect x=\"%.1f\" y=\"%.1f\" width=\"%.1f\" height=\"%.1f\" fill=\"none\" "
            "stroke=\"#333\"/>\n",
            f->left, f->top, f->width, f->height);
    fprintf(out,
            "<text x=\"%.1f\" y=\"%.1f\" text-anchor=\"middle\" font-size=\"13\">"
            "visitors t (steps of the simulation)</text>\n",
            f->left + f->width / 2, f->top + f->height + 40);
    fprintf(out,
            "<text transform=\"translate(%.1f,%.1f) rotate(-90)\" text-anchor=\"middle\" "
            "font-size=\"13\">expected cumulative regret (lost rewards, range scaled to "
            "[0, 1])</text>\n",
            f->left - 58, f->top + f->height / 2);
    fputs("</g>\n", out);
}

static void draw_policy(FILE *out, const plot_frame *f, const sim_results *r, size_t p)
{
    const sim_policy_result *pr = &r->policies[p];
    const char *colour = palette[p % N_PALETTE];
    /* The band: upper edge forwards, lower edge back. */
    fprintf(out, "<polygon fill=\"%s\" fill-opacity=\"0.18\" stroke=\"none\" points=\"%.1f,%.1f",
            colour, px(f, 0), py(f, 0));
    for (size_t c = 0; c < r->n_checkpoints; c++)
        fprintf(out, " %.1f,%.1f", px(f, (double)r->checkpoints[c]), py(f, pr->curve_hi[c]));
    for (size_t c = r->n_checkpoints; c-- > 0;)
        fprintf(out, " %.1f,%.1f", px(f, (double)r->checkpoints[c]), py(f, pr->curve_lo[c]));
    fputs("\"/>\n", out);
    fprintf(out, "<polyline fill=\"none\" stroke=\"%s\" stroke-width=\"2\" points=\"%.1f,%.1f",
            colour, px(f, 0), py(f, 0));
    for (size_t c = 0; c < r->n_checkpoints; c++)
        fprintf(out, " %.1f,%.1f", px(f, (double)r->checkpoints[c]), py(f, pr->curve_mean[c]));
    fputs("\"/>\n", out);
}

/* ln(t) * rate on a logarithmic grid, where its curvature is. */
static void draw_lai_robbins(FILE *out, const plot_frame *f, double rate)
{
    fputs("<polyline fill=\"none\" stroke=\"#555\" stroke-width=\"1.5\" "
          "stroke-dasharray=\"6,4\" points=\"",
          out);
    const int n = 200;
    for (int i = 0; i <= n; i++) {
        double t = exp(log(f->x_max) * i / n);
        fprintf(out, "%s%.1f,%.1f", i ? " " : "", px(f, t), py(f, rate * log(t)));
    }
    fputs("\"/>\n", out);
}

/* "Bernoulli arms, click probabilities 0.1, 0.05, ..." (at most 12 listed). */
static void describe_arms(FILE *out, const sim_bandit *b)
{
    fputs(b->kind == SIM_BERNOULLI ? "Bernoulli arms, click probabilities "
                                   : "Gaussian arms (clamped to the reward range), means ",
          out);
    for (size_t i = 0; i < b->n_arms && i < 12; i++)
        fprintf(out, "%s%g", i ? ", " : "", b->param[i]);
    if (b->n_arms > 12)
        fprintf(out, ", ... (%zu arms)", b->n_arms);
    if (b->kind == SIM_GAUSSIAN) {
        bool same = true;
        for (size_t i = 1; i < b->n_arms; i++)
            same = same && b->sd[i] == b->sd[0];
        if (same)
            fprintf(out, ", sd %g", b->sd[0]);
        else
            fputs(", sds per arm", out);
    }
}

/* Panel p below the regret plot: policy p's share of traffic per arm. */
static void draw_shares(FILE *out, const sim_report *report, size_t p, double top)
{
    const sim_results *r = report->results;
    const sim_bandit *b = report->plan->bandit;
    plot_frame f = {.left = 90, .top = top, .width = 600, .height = 110,
                    .x_max = (double)report->plan->steps, .y_max = 1};
    char label[64];
    fputs("<g font-size=\"11\" fill=\"#333\">\n", out);
    for (int i = 0; i <= 4; i++) {
        double y = i / 4.0;
        tick_label(label, sizeof label, y);
        fprintf(out,
                "<line x1=\"%.1f\" y1=\"%.1f\" x2=\"%.1f\" y2=\"%.1f\" stroke=\"#eee\"/>\n"
                "<text x=\"%.1f\" y=\"%.1f\" text-anchor=\"end\">%s</text>\n",
                f.left, py(&f, y), f.left + f.width, py(&f, y), f.left - 6, py(&f, y) + 4, label);
    }
    fprintf(out,
            "<rect x=\"%.1f\" y=\"%.1f\" width=\"%.1f\" height=\"%.1f\" fill=\"none\" "
            "stroke=\"#333\"/>\n<text x=\"%.1f\" y=\"%.1f\" font-size=\"12\">Traffic share "
            "per arm over time (mean over runs): ",
            f.left, f.top, f.width, f.height, f.left, f.top - 6);
    xml_text(out, report->labels[p]);
    fputs("</text>\n</g>\n", out);
    const sim_policy_result *pr = &r->policies[p];
    size_t k = b->n_arms;
    for (size_t a = 0; a < k; a++) {
        fprintf(out, "<polyline fill=\"none\" stroke=\"%s\" stroke-width=\"1.5\" points=\"",
                palette[a % N_PALETTE]);
        for (size_t c = 0; c < r->n_checkpoints; c++)
            fprintf(out, "%s%.1f,%.1f", c ? " " : "", px(&f, (double)r->checkpoints[c]),
                    py(&f, pr->share_mean[c * k + a]));
        fputs("\"/>\n", out);
    }
    /* The arms' legend, once, beside the first panel. */
    if (p != 0)
        return;
    double lx = f.left + f.width + 20, ly = f.top + 12;
    fputs("<g font-size=\"12\">\n", out);
    for (size_t a = 0; a < k && a < 16; a++, ly += 18) {
        fprintf(out,
                "<line x1=\"%.1f\" y1=\"%.1f\" x2=\"%.1f\" y2=\"%.1f\" stroke=\"%s\" "
                "stroke-width=\"2\"/>\n<text x=\"%.1f\" y=\"%.1f\">arm ",
                lx, ly - 4, lx + 18, ly - 4, palette[a % N_PALETTE], lx + 26, ly);
        if (report->arm_ids)
            xml_text(out, report->arm_ids[a]);
        else
            fprintf(out, "%zu", a + 1);
        fputs("</text>\n", out);
    }
    fputs("</g>\n", out);
}

int sim_write_svg(FILE *out, const sim_report *report)
{
    const sim_plan *plan = report->plan;
    const sim_results *r = report->results;
    bool still = sim_scenario_static(plan->scenario);
    double rate = still ? sim_lai_robbins_rate(plan->bandit) : 0;
    double steps = (double)plan->steps;

    double y_max = rate * log(steps);
    for (size_t p = 0; p < r->n_policies; p++)
        for (size_t c = 0; c < r->n_checkpoints; c++)
            if (r->policies[p].curve_hi[c] > y_max)
                y_max = r->policies[p].curve_hi[c];
    if (!(y_max > 0))
        y_max = 1;
    double ys = nice_step(y_max * 1.05, 6);
    y_max = ceil(y_max * 1.05 / ys) * ys;

    const double width = 1100, legend_height = 22.0 * (double)(r->n_policies + 1);
    plot_frame f = {.left = 90, .top = 88, .width = 600, .height = 400,
                    .x_max = steps, .y_max = y_max};
    double height = f.top + f.height + 70;
    if (f.top + legend_height + 20 > height)
        height = f.top + legend_height + 20;
    double shares_top = height + 20, panel = 150;
    height = shares_top + panel * (double)r->n_policies + 10;

    fprintf(out,
            "<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n"
            "<svg xmlns=\"http://www.w3.org/2000/svg\" width=\"%.0f\" height=\"%.0f\" "
            "viewBox=\"0 0 %.0f %.0f\" font-family=\"sans-serif\">\n"
            "<rect width=\"100%%\" height=\"100%%\" fill=\"white\"/>\n",
            width, height, width, height);
    fputs("<text x=\"20\" y=\"28\" font-size=\"17\" font-weight=\"bold\">Expected "
          "cumulative regret of each policy on the arms of experiment ",
          out);
    xml_text(out, report->experiment);
    fprintf(out,
            "</text>\n<text x=\"20\" y=\"48\" font-size=\"12\" fill=\"#333\">Mean of %llu "
            "independent run%s%s. Regret = T·μ* − Σ μ(chosen arm), from the true means "
            "(lower is better)%s.</text>\n",
            (unsigned long long)plan->runs, plan->runs == 1 ? "" : "s",
            plan->runs > 1 ? " per policy; shaded band: 95% interval of the mean" : "",
            still ? "" : "; dynamic: against each visitor's best arm at that time");
    fputs("<text x=\"20\" y=\"66\" font-size=\"12\" fill=\"#333\">", out);
    describe_arms(out, plan->bandit);
    fprintf(out, "; T = %llu visitors, seed %llu", (unsigned long long)plan->steps,
            (unsigned long long)plan->seed);
    const sim_scenario *sc = plan->scenario;
    if (sc && sc->change_at)
        fprintf(out, "; abrupt change after visitor %llu", (unsigned long long)sc->change_at);
    if (sc && sc->drift != 0)
        fprintf(out, "; drift %g over %g s", sc->drift, sc->drift_period);
    if (sc && sc->delay > 0)
        fprintf(out, "; delay mean %g visitors", sc->delay);
    if (sc && sc->workers > 1)
        fprintf(out, "; %u workers, refresh %u ms", sc->workers, (unsigned)sc->refresh_ms);
    if (sc && sc->context_dim)
        fprintf(out, "; linear context d = %u", sc->context_dim);
    if (sc)
        fprintf(out, "; %g visitors/s", sc->rate);
    fputs(".</text>\n", out);

    draw_axes(out, &f);
    for (size_t p = 0; p < r->n_policies; p++)
        draw_policy(out, &f, r, p);
    if (rate > 0)
        draw_lai_robbins(out, &f, rate);

    double lx = f.left + f.width + 20, ly = f.top + 8;
    fputs("<g font-size=\"12\">\n", out);
    for (size_t p = 0; p < r->n_policies; p++, ly += 22) {
        const sim_policy_result *pr = &r->policies[p];
        fprintf(out,
                "<rect x=\"%.1f\" y=\"%.1f\" width=\"18\" height=\"10\" fill=\"%s\" "
                "fill-opacity=\"0.35\" stroke=\"%s\" stroke-width=\"2\"/>\n"
                "<text x=\"%.1f\" y=\"%.1f\">",
                lx, ly - 9, palette[p % N_PALETTE], palette[p % N_PALETTE], lx + 26, ly);
        xml_text(out, report->labels[p]);
        if (isnan(pr->regret_ci))
            fprintf(out, " (%.1f at T)</text>\n", pr->regret_mean);
        else
            fprintf(out, " (%.1f ± %.1f at T)</text>\n", pr->regret_mean, pr->regret_ci);
    }
    if (rate > 0)
        fprintf(out,
                "<line x1=\"%.1f\" y1=\"%.1f\" x2=\"%.1f\" y2=\"%.1f\" stroke=\"#555\" "
                "stroke-width=\"1.5\" stroke-dasharray=\"6,4\"/>\n"
                "<text x=\"%.1f\" y=\"%.1f\">Lai–Robbins lower bound</text>\n"
                "<text x=\"%.1f\" y=\"%.1f\" fill=\"#555\">ln t · Σ Δᵢ/KL(μᵢ, μ*) = "
                "%.3g · ln t (asymptotic)</text>\n",
                lx, ly - 4, lx + 18, ly - 4, lx + 26, ly, lx + 26, ly + 16, rate);
    fputs("</g>\n", out);
    for (size_t p = 0; p < r->n_policies; p++)
        draw_shares(out, report, p, shares_top + panel * (double)p);
    fputs("</svg>\n", out);
    return ferror(out) ? -1 : 0;
}
