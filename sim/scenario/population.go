package scenario

import (
	"fmt"
	"math/rand/v2"

	"github.com/immense-p2p/immense/sim/churn"
)

// PopulationStream is the PCG stream both modes draw the population from:
// with the same seed, a live run and a model run of a scenario have the
// same nodes in the same regions going up and down at the same times.
const PopulationStream = 0x706f70 // "pop"

// Population lays the nodes out for churn: node i < Servers.Count is a
// server (class 0), spread over the regions in turn; every other node is a
// volunteer (class 1) in a region drawn by share. Mass events start Warmup
// after time 0. It returns the churn configuration and each node's region.
func (sc *Scenario) Population(rng *rand.Rand) (churn.Config, []int, error) {
	var cfg churn.Config
	srv, err := sc.Servers.Churn()
	if err != nil && sc.Servers.Count > 0 {
		return cfg, nil, fmt.Errorf("servers: %w", err)
	}
	vol, err := sc.Volunteers.Churn()
	if err != nil && sc.VolunteerCount() > 0 {
		return cfg, nil, fmt.Errorf("volunteers: %w", err)
	}
	cfg.Classes = []churn.Class{srv, vol}
	regions := make([]int, sc.Nodes)
	for i := range sc.Nodes {
		if i < sc.Servers.Count {
			regions[i] = i % len(sc.Network.Regions)
			cfg.Members = append(cfg.Members, churn.Member{Class: 0, Region: regions[i]})
			continue
		}
		u := rng.Float64()
		for j, rg := range sc.Network.Regions {
			regions[i] = j
			if u < rg.Share {
				break
			}
			u -= rg.Share
		}
		cfg.Members = append(cfg.Members, churn.Member{Class: 1, Region: regions[i]})
	}
	w := sc.Warmup.D()
	for _, e := range sc.Events {
		switch e.Kind {
		case RegionDark:
			cfg.Outages = append(cfg.Outages, churn.Outage{At: w + e.At.D(), Region: sc.Network.RegionIndex(e.Region), Duration: e.Duration.D()})
		case MassReboot:
			rb := churn.Reboot{At: w + e.At.D(), Within: e.Within.D(), Downtime: e.Downtime.D(), Share: e.Share, Classes: []int{1}}
			if e.Servers {
				rb.Classes = nil
			}
			cfg.Reboots = append(cfg.Reboots, rb)
		}
	}
	return cfg, regions, nil
}

// Schedule returns the scenario's churn schedule for seed.
func (sc *Scenario) Schedule(seed uint64) (*churn.Schedule, []int, error) {
	rng := rand.New(rand.NewPCG(seed, PopulationStream))
	cfg, regions, err := sc.Population(rng)
	if err != nil {
		return nil, nil, err
	}
	s, err := churn.NewSchedule(cfg, rng)
	if err != nil {
		return nil, nil, err
	}
	return s, regions, nil
}
