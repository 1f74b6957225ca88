"""One decoding engine for every backend: greedy, sampling and beam search over the model contract.

Search sees only `encode` / `init_cache` / `decode` and flat dicts of batch-first tensors, so
reordering beams or dropping finished sentences is one `index_select` per tensor. Sentences that
finish leave the active batch, so a long sentence does not slow down the short ones.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import Tensor

from nmt.batching import collate, pad
from nmt.constraints import Phrases
from nmt.length_batches import length_batches
from nmt.models.base import select_batch, src_mask_of
from nmt.search_options import Hypothesis, SearchOptions, length_penalty
from nmt.tokenizer import BOS_ID, EOS_ID, PAD_ID

NEG_INF = float("-inf")


@torch.no_grad()
def generate(
    model,
    src: Tensor,
    opts: SearchOptions,
    max_len: int,
    src_lens: list[int] | None = None,
    constraints: list[Phrases] | None = None,
) -> list[list[Hypothesis]]:
    """Translate a padded batch of source ids (B, S); n-best hypotheses per sentence.
    `src_lens`, the sources' lengths, saves reading them back from the device. `constraints`
    (one `Phrases` per sentence) turns on constrained beam search, at any beam size."""
    src_mask = src_mask_of(src)
    if src_lens is None:
        src_lens = src_mask.sum(1).tolist()
    limits = torch.tensor(opts.length_limits(src_lens, max_len), device=src.device)
    encoded = model.encode(src, src_mask)
    if opts.beam == 1 and constraints is None:
        return _greedy(model, encoded, limits, opts)
    return _beam(model, encoded, limits, opts, constraints)


def decode_corpus(
    model,
    src_ids: list[list[int]],
    opts: SearchOptions,
    max_len: int,
    device,
    constraints: list[Phrases] | None = None,
) -> list[list[Hypothesis]]:
    """Search over many encoded sentences (none empty) in length-bucketed batches within
    `opts.budget()` source tokens; results in input order. `constraints`: per sentence."""
    results: list[list[Hypothesis]] = [[] for _ in src_ids]
    lengths = [len(s) for s in src_ids]
    for idx in length_batches(lengths, opts.budget()):
        batch = [src_ids[i] for i in idx]
        batch_constraints = None if constraints is None else [constraints[i] for i in idx]
        if batch_constraints is not None and not any(batch_constraints):
            batch_constraints = None  # nothing to constrain: the plain (greedy or beam) search
        lens = [lengths[i] for i in idx]
        hyps = generate(model, pad(batch, device), opts, max_len, lens, batch_constraints)
        for i, h in zip(idx, hyps):
            results[i] = h
    return results


@torch.no_grad()
def score_corpus(
    model, src_ids: list[list[int]], tgt_ids: list[list[int]], budget: int, device
) -> list[float]:
    """Forced decoding: the log-probability of each target (ids without BOS/EOS; EOS is
    scored) given its source (ids ending in EOS), in length-bucketed batches; input order."""
    totals = [0.0] * len(src_ids)
    src_lens = [len(s) for s in src_ids]
    tgt_lens = [len(t) + 1 for t in tgt_ids]
    widths = [max(s, t) for s, t in zip(src_lens, tgt_lens)]
    order = sorted(range(len(widths)), key=lambda i: (widths[i], tgt_lens[i], src_lens[i]))
    for idx in length_batches(widths, budget, order):
        src, tgt_in, tgt_out, _ = collate(
            [src_ids[i] for i in idx], [tgt_ids[i] for i in idx], device
        )
        logp = model(src, tgt_in).float().log_softmax(-1)
        gold = logp.gather(-1, tgt_out[..., None]).squeeze(-1)
        sums = gold.masked_fill(tgt_out == PAD_ID, 0.0).sum(-1).tolist()
        for i, total in zip(idx, sums):
            totals[i] = total
    return totals


# ---------------------------------------------------------------------------------------------
# Shared step helpers


def _next_log_probs(model, last: Tensor, encoded, cache, opts: SearchOptions, prefix: Tensor):
    """One decoder step: log-probabilities (N, V), attention (N, S) or None, new cache."""
    logits, attn, cache = model.decode(last, encoded, cache)
    logits = logits[:, -1].float()
    if opts.sample and opts.temperature != 1.0:
        logits = logits / opts.temperature
    if opts.no_repeat_ngram > 0:  # before the softmax: the other tokens share the blocked mass
        _block_repeats(logits, prefix, opts.no_repeat_ngram)
    logp = logits.log_softmax(-1)  # (N, V)
    return logp, (attn[:, -1] if attn is not None else None), cache


def _block_repeats(logits: Tensor, prefix: Tensor, n: int) -> None:
    """Forbid tokens that would repeat an n-gram already in the hypothesis."""
    if prefix.size(1) < n:
        return
    for row, seq in enumerate(prefix.tolist()):
        key = tuple(seq[len(seq) - n + 1 :]) if n > 1 else ()
        for i in range(len(seq) - n + 1):
            if tuple(seq[i : i + n - 1]) == key:
                logits[row, seq[i + n - 1]] = NEG_INF


def _sample(logp: Tensor, opts: SearchOptions) -> Tensor:
    """Draw one token per row with top-k / nucleus (top-p) truncation."""
    if opts.top_k > 0:
        kth = logp.topk(min(opts.top_k, logp.size(-1)), -1).values[:, -1:]
        logp = logp.masked_fill(logp < kth, NEG_INF)
    if opts.top_p < 1.0:
        sorted_lp, order = logp.sort(-1, descending=True)
        cum = sorted_lp.exp().cumsum(-1)
        drop = cum - sorted_lp.exp() > opts.top_p  # keep the smallest set reaching top_p
        logp = logp.scatter(-1, order, sorted_lp.masked_fill(drop, NEG_INF))
    return torch.multinomial(logp.exp(), 1).squeeze(1)


# ---------------------------------------------------------------------------------------------
# Greedy (and sampling)


def _greedy(model, encoded, limits: Tensor, opts: SearchOptions) -> list[list[Hypothesis]]:
    B = limits.size(0)
    device = limits.device
    cache = model.init_cache(encoded)
    active = torch.arange(B, device=device)  # original sentence index of each row
    tokens = torch.full((B, 1), BOS_ID, dtype=torch.long, device=device)
    scores = torch.zeros(B, device=device)
    attns: list[Tensor] = []  # per step (A_t, S), rows of the active batch at that step
    rows: list[Tensor] = []  # per step: original indices of those rows
    results: list[list[Hypothesis]] = [[] for _ in range(B)]
    step = 0
    while active.numel():
        logp, attn, cache = _next_log_probs(
            model, tokens[:, -1:], encoded, cache, opts, tokens[:, 1:]
        )
        nxt = _sample(logp, opts) if opts.sample else logp.argmax(-1)  # (A,)
        scores = scores + logp.gather(1, nxt[:, None]).squeeze(1)
        tokens = torch.cat([tokens, nxt[:, None]], 1)
        if opts.attention and attn is not None:
            attns.append(attn)
            rows.append(active)
        step += 1
        done = (nxt == EOS_ID) | (step >= limits[active])
        if done.any():
            for r in done.nonzero().flatten().tolist():
                seq = tokens[r, 1:].tolist()
                ended = seq[-1] == EOS_ID
                seq = seq[:-1] if ended else seq
                results[active[r].item()] = [Hypothesis(seq, scores[r].item(), ended=ended)]
            keep = (~done).nonzero().flatten()
            active, tokens, scores = active[keep], tokens[keep], scores[keep]
            encoded, cache = select_batch(encoded, keep), select_batch(cache, keep)
    if opts.attention and attns:
        _attach_greedy_attention(results, attns, rows)
    return results


def _attach_greedy_attention(results, attns: list[Tensor], rows: list[Tensor]) -> None:
    per_sent: dict[int, list[Tensor]] = {}
    for a, r in zip(attns, rows):
        for i, sent in enumerate(r.tolist()):
            per_sent.setdefault(sent, []).append(a[i])
    for sent, steps in per_sent.items():
        results[sent][0].attention = torch.stack(steps).cpu()  # (T, S)


# ---------------------------------------------------------------------------------------------
# Beam search


@dataclass
class _Beams:
    """The alive part of a batched beam search: A active sentences x K beams."""

    sent: Tensor  # (A,) original sentence index
    tokens: Tensor  # (A*K, t+1) with BOS
    scores: Tensor  # (A, K) cumulative log-probabilities
    attn: Tensor | None  # (A*K, t, S)
    limits: Tensor  # (A,) max output length (tokens incl. EOS)
    states: list | None = None  # A*K constraint states (`Phrases`), with constraints

    def keep(self, idx: Tensor, K: int) -> _Beams:
        rows = (idx[:, None] * K + torch.arange(K, device=idx.device)).flatten()
        return _Beams(
            self.sent[idx],
            self.tokens[rows],
            self.scores[idx],
            None if self.attn is None else self.attn[rows],
            self.limits[idx],
            None if self.states is None else [self.states[r] for r in rows.tolist()],
        )


def _beam(
    model, encoded, limits: Tensor, opts: SearchOptions, constraints: list[Phrases] | None = None
) -> list[list[Hypothesis]]:
    B, K, device = limits.size(0), opts.beam, limits.device
    expand = torch.arange(B, device=device).repeat_interleave(K)
    encoded = select_batch(encoded, expand)
    cache = model.init_cache(encoded)
    scores = torch.full((B, K), NEG_INF, device=device)
    scores[:, 0] = 0.0  # only the first beam expands at step 0
    tokens = torch.full((B * K, 1), BOS_ID, dtype=torch.long, device=device)
    beams = _Beams(torch.arange(B, device=device), tokens, scores, None, limits)
    if constraints is not None:
        beams.states = [c.start() for c in constraints for _ in range(K)]
    finished: list[list[Hypothesis]] = [[] for _ in range(B)]
    step = 0
    while beams.sent.numel():
        logp, attn, cache = _next_log_probs(
            model, beams.tokens[:, -1:], encoded, cache, opts, beams.tokens[:, 1:]
        )
        step += 1
        if opts.attention and attn is not None:
            new_attn = attn[:, None]  # (A*K, 1, S)
            beams.attn = new_attn if beams.attn is None else torch.cat([beams.attn, new_attn], 1)
        if constraints is None:
            beams, order = _beam_step(beams, logp, step, K, opts, finished)
        else:
            beams, order = _constrained_step(beams, logp, step, K, opts, finished, constraints)
        done = _sentences_done(beams, finished, step, opts)
        if done.any():
            keep = (~done).nonzero().flatten()
            rows = (keep[:, None] * K + torch.arange(K, device=device)).flatten()
            order = order[rows]
            beams = beams.keep(keep, K)
            # `encoded` is the same for every beam of a sentence: only finished sentences leave it
            encoded = select_batch(encoded, rows)
        cache = select_batch(cache, order)
    # hypotheses that meet every constraint first (the others stopped at the length limit)
    return [sorted(f, key=lambda h: (len(h.unmet), -h.score))[: opts.n_best] for f in finished]


def _beam_step(beams: _Beams, logp: Tensor, step: int, K: int, opts, finished):
    """Extend every beam by one token; move hypotheses ending in EOS to `finished`."""
    A, V = beams.scores.size(0), logp.size(-1)
    cand = (beams.scores.view(-1, 1) + logp).view(A, K * V)  # (A, K*V)
    top_scores, top_idx = cand.topk(2 * K, dim=1)  # (A, 2K): at most K of them end in EOS
    src_beam, tok = top_idx // V, top_idx % V
    at_limit = step >= beams.limits  # (A,): every top-K candidate finishes now
    ends = (tok == EOS_ID) | at_limit[:, None]
    ends[:, K:] = False  # only candidates that would make the beam count
    ends &= top_scores > NEG_INF
    lp = length_penalty(step, opts.rank_alpha)
    for a, j in ends.nonzero().tolist():
        row = a * K + src_beam[a, j].item()
        seq, last = beams.tokens[row, 1:].tolist(), tok[a, j].item()
        if last != EOS_ID:
            seq.append(last)
        att = beams.attn[row].cpu() if beams.attn is not None else None
        hyp = Hypothesis(seq, top_scores[a, j].item() / lp, att, ended=last == EOS_ID)
        finished[beams.sent[a].item()].append(hyp)
    # The next alive beams: the best K candidates that did not end.
    alive_scores = top_scores.masked_fill(ends | (tok == EOS_ID), NEG_INF)
    pick_scores, pick = alive_scores.topk(K, dim=1)  # (A, K)
    order = (torch.arange(A, device=logp.device)[:, None] * K + src_beam.gather(1, pick)).flatten()
    new_tok = tok.gather(1, pick).flatten()
    beams.tokens = torch.cat([beams.tokens[order], new_tok[:, None]], 1)
    beams.scores = pick_scores
    if beams.attn is not None:
        beams.attn = beams.attn[order]
    return beams, order


def _sentences_done(beams: _Beams, finished, step: int, opts) -> Tensor:
    """A sentence is done at its length limit, when no beam is alive, or when no alive beam can
    still beat its n-th best finished hypothesis: alive scores only fall, so an alive beam's
    final score is at most its score now over the most favourable length penalty among the
    lengths still allowed (at the limit for alpha >= 0). Having K finished hypotheses is not
    enough: a longer alive beam can still win."""
    best_alive = beams.scores.max(1).values
    bound = torch.maximum(
        best_alive / length_penalty(beams.limits.float(), opts.rank_alpha),
        best_alive / length_penalty(step + 1, opts.rank_alpha),
    )
    done = ((step >= beams.limits) | (best_alive == NEG_INF)).tolist()
    for a, (sent, limit) in enumerate(zip(beams.sent.tolist(), bound.tolist())):
        f = finished[sent]
        if not done[a] and len(f) >= opts.n_best:
            done[a] = sorted((h.score for h in f), reverse=True)[opts.n_best - 1] >= limit
    return torch.tensor(done, device=bound.device)


# ---------------------------------------------------------------------------------------------
# Constrained beam search: dynamic beam allocation (Post & Vilar, 2018)


def _constrained_step(beams: _Beams, logp: Tensor, step: int, K: int, opts, finished, phrases):
    """`_beam_step` for hypotheses that must produce given phrases. Candidates are the best 2K
    extensions of a sentence, each beam's best token, and every token that advances one of its
    unmet phrases; they are banked by the constraint tokens they have produced and the K beams
    are dealt round-robin from the fullest bank down, so that hypotheses that have met fewer
    constraints keep a share of the beam. A hypothesis may end only once all are met."""
    A, V = beams.scores.size(0), logp.size(-1)
    of_row = [phrases[s] for s in beams.sent.tolist() for _ in range(K)]
    early = [r for r, (p, st) in enumerate(zip(of_row, beams.states)) if not p.may_end(st)]
    if early:
        logp[early, EOS_ID] = NEG_INF
    cand = beams.scores.view(-1, 1) + logp  # (A*K, V)
    top_scores, top_idx = cand.view(A, K * V).topk(2 * K, dim=1)  # (A, 2K)
    best_scores, best_tok = cand.max(1)  # (A*K,)
    extra = [(r, t) for r, (p, st) in enumerate(zip(of_row, beams.states)) for t in p.wanted(st)]
    extra_scores = cand[[r for r, _ in extra], [t for _, t in extra]].tolist() if extra else []
    pools: list[dict] = [{} for _ in range(A)]  # per sentence: (row, token) -> score
    for a, (ss, ii) in enumerate(zip(top_scores.tolist(), top_idx.tolist())):
        pools[a].update(((a * K + i // V, i % V), sc) for sc, i in zip(ss, ii))
    for r, (sc, t) in enumerate(zip(best_scores.tolist(), best_tok.tolist())):
        pools[r // K][(r, t)] = sc
    for (r, t), sc in zip(extra, extra_scores):
        pools[r // K][(r, t)] = sc
    limits, picked = beams.limits.tolist(), []
    for a, pool in enumerate(pools):
        p = of_row[a * K]
        ranked = _allocate([(sc, r, t, p.advance(beams.states[r], t), p) for (r, t), sc in
                            pool.items() if sc > NEG_INF])  # fmt: skip
        picked.append(_deal(beams, a, K, ranked, step >= limits[a], step, opts, finished))
    order = torch.tensor([r for row in picked for _, r, _, _ in row], device=logp.device)
    new_tok = torch.tensor([t for row in picked for _, _, t, _ in row], device=logp.device)
    beams.tokens = torch.cat([beams.tokens[order], new_tok[:, None]], 1)
    beams.scores = torch.tensor([[sc for sc, *_ in row] for row in picked], device=logp.device)
    beams.states = [st for row in picked for *_, st in row]
    if beams.attn is not None:
        beams.attn = beams.attn[order]
    return beams, order


def _allocate(cands: list[tuple]) -> list[tuple]:
    """Candidates (score, row, token, state, phrases) in the order they take beam slots: the
    best of each bank in turn, from the bank with most constraint tokens produced down."""
    banks: dict[int, list[tuple]] = {}
    for c in sorted(cands, key=lambda c: -c[0]):
        banks.setdefault(c[4].bank(c[3]), []).append(c)
    queues = [banks[b] for b in sorted(banks, reverse=True)]
    return [q[i] for i in range(max(map(len, queues), default=0)) for q in queues if i < len(q)]


def _deal(beams: _Beams, a: int, K: int, ranked, at_limit: bool, step: int, opts, finished):
    """Sentence a's next K beams (score, row, token, state), padded with dead ones; candidates
    that end (EOS, or any at the length limit) among the first K slots are finished."""
    alive = []
    lp = length_penalty(step, opts.rank_alpha)
    for n, (sc, r, t, st, p) in enumerate(ranked):
        if at_limit or t == EOS_ID:
            if n < K:
                seq = beams.tokens[r, 1:].tolist() + ([] if t == EOS_ID else [t])
                att = beams.attn[r].cpu() if beams.attn is not None else None
                hyp = Hypothesis(seq, sc / lp, att, ended=t == EOS_ID, unmet=p.unmet(st))
                finished[beams.sent[a].item()].append(hyp)
        elif len(alive) < K:
            alive.append((sc, r, t, st))
    if at_limit:
        alive = []
    dead = (NEG_INF, a * K, PAD_ID, beams.states[a * K])
    return alive + [dead] * (K - len(alive))
