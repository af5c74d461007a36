package model

import (
	"math"

	"github.com/immense-p2p/immense/erasure"
	"github.com/immense-p2p/immense/sim/report"
)

// storageCost adds issue 14's figures to sum: what the objects cost in
// storage against the optimum for their holders, where the bytes sit,
// and what repair moved against the Blake-Rodrigues bound.
func (r *run) storageCost(sum *report.Summary) {
	s, sc := r.st, r.sc
	d := sum.Details
	nan := math.NaN()
	days := sc.Duration.D().Hours() / 24
	var exp, opt []float64
	unreachable := 0
	for _, o := range s.objects {
		if !o.written || o.size == 0 {
			continue
		}
		size := float64(o.size)
		exp = append(exp, float64(o.params.Total())*float64(o.shardBytes)/size)
		// The optimum for the holders the object has now: the least n of
		// them, most available first, that meets the target, from their
		// long-run availability (what a tracker converges to).
		var avail []float64
		for _, h := range o.holders {
			if s.alive(h) {
				avail = append(avail, r.pop.sched.Profile(int(h.slot)).Availability)
			}
		}
		n, ok := erasure.LeastShards(o.params.DataShards, avail, sc.Storage.Target)
		if !ok {
			unreachable++
		}
		opt = append(opt, float64(n)*float64(o.shardBytes)/size)
	}
	me, _ := report.MeanStd(exp)
	mo, _ := report.MeanStd(opt)
	sum.StorageExpansion, sum.StorageExpansionOptimum = report.F(me), report.F(mo)
	if len(exp) > 0 {
		d["storage_expansion_vs_optimum"] = me / mo
		d["storage_expansion_p99"] = report.Quantile(exp, 0.99)
		d["optimum_unreachable_share"] = float64(unreachable) / float64(len(exp))
	}
	if tot := s.storedVol + s.storedSrv; tot > 0 {
		sum.VolunteerBytesShare = report.F(float64(s.storedVol) / float64(tot))
	}
	// Quota use over the volunteers holding shards (bytes when there is no
	// quota).
	var useSum, useMax float64
	holding, over := 0, 0
	for slot := r.pop.servers; slot < sc.Nodes; slot++ {
		u := s.used[slot]
		if u <= 0 {
			continue
		}
		holding++
		use := float64(u)
		if q := s.quota(int32(slot)); q > 0 {
			use /= float64(q)
			if u > q {
				over++
			}
		}
		useSum += use
		useMax = max(useMax, use)
	}
	if holding > 0 {
		sum.VolunteerQuotaUseMaxOverMean = report.F(useMax / (useSum / float64(holding)))
		d["volunteers_holding"] = float64(holding)
		d["volunteers_over_quota"] = float64(over)
		if sc.Storage.VolunteerQuota > 0 {
			d["volunteer_quota_use_max"] = useMax
			d["volunteer_quota_use_mean"] = useSum / float64(holding)
		}
	}
	// Blake and Rodrigues (HotOS 2003): in steady state every byte stored
	// on a holder that leaves for good must be stored again elsewhere, so
	// repair moves at least (bytes stored) x (window) / (mean lifetime)
	// per class of holder.
	bound := 0.0
	if lt := sc.Volunteers.Lifetime.Mean.D(); lt > 0 {
		bound += s.storedVolSec / lt.Seconds()
	}
	if lt := sc.Servers.Lifetime.Mean.D(); lt > 0 {
		bound += s.storedSrvSec / lt.Seconds()
	}
	vsBound := nan
	if bound > 0 {
		vsBound = s.repairUpload / bound
		d["repair_total_vs_bound"] = s.repairBytes / bound
	}
	sum.RepairBytesVsBound = report.F(vsBound)
	d["repair_bound_bytes"] = bound
	d["repair_upload_bytes"] = s.repairUpload
	d["departed_bytes"] = s.departedBytes
	if s.readableTotal > 0 {
		d["retrievability_by_true_availability"] = s.trueProbSum / s.readableTotal
	}
	d["unreadable_samples"] = float64(s.unreadable)
	if s.repairUpload > 0 {
		d["repair_upload_holder_still_in_network_share"] = s.regenAliveBytes / s.repairUpload
	}
	d["unreadable_with_departed_holder"] = float64(s.unreadableDeparted)
	d["unreadable_true_availability_below_target"] = float64(s.unreadableTrueLow)
	d["stored_bytes_volunteers"] = float64(s.storedVol)
	d["stored_bytes_servers"] = float64(s.storedSrv)
	d["repair_bytes_by_volunteers_per_volunteer_per_day"] = s.volunteerRepairBytes / float64(max(1, sc.VolunteerCount())) / days
	maxVol := 0.0
	for _, b := range s.volunteerRepairBySlot {
		maxVol = max(maxVol, b)
	}
	d["repair_bytes_max_volunteer_per_day"] = maxVol / days
}
