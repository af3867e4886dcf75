package ec2test

import (
	"encoding/base64"
	"fmt"
	"net/http"
	"net/url"
	"slices"
	"sort"
	"strconv"
	"strings"
	"time"
)

// Limits EC2 documents for the actions served here.
const (
	maxClientToken    = 64
	maxUserData       = 16 << 10 // bytes, before base64
	maxTagsPerSpec    = 50
	maxTerminateIDs   = 1000
	minMaxResults     = 5
	maxMaxResults     = 1000
	minRootVolumeGiB  = 8 // the size of the snapshot behind every test image
	defaultInstanceTy = "m1.small"
)

// runInstances launches MaxCount instances in one reservation. A request
// with a ClientToken that was seen before returns that request's reservation
// as it is now, or IdempotentParameterMismatch when the other parameters
// differ, so a retried launch never makes a second set of instances.
func (s *Server) runInstances(form url.Values, requestID string) (any, *apiError) {
	image := form.Get("ImageId")
	if image == "" {
		return nil, errorf(http.StatusBadRequest, "MissingParameter", "The request must contain the parameter ImageId")
	}
	minCount, err := countParam(form, "MinCount")
	if err != nil {
		return nil, err
	}
	maxCount, err := countParam(form, "MaxCount")
	if err != nil {
		return nil, err
	}
	if minCount > maxCount {
		return nil, errorf(http.StatusBadRequest, "InvalidParameterValue", "MinCount (%d) must not be greater than MaxCount (%d)", minCount, maxCount)
	}
	token := form.Get("ClientToken")
	if len(token) > maxClientToken || !isASCII(token) {
		return nil, errorf(http.StatusBadRequest, "InvalidParameterValue", "Value for parameter clientToken is invalid: at most %d ASCII characters", maxClientToken)
	}
	fingerprint := launchFingerprint(form)
	if token != "" {
		if rec, ok := s.tokens[token]; ok {
			if rec.fingerprint != fingerprint {
				return nil, errorf(http.StatusBadRequest, "IdempotentParameterMismatch",
					"Arguments on this idempotent request are inconsistent with arguments used in previous request(s).")
			}
			return s.reservationResponse(requestID, rec.reservationID), nil
		}
	}

	if !validID("ami-", image) {
		return nil, errorf(http.StatusBadRequest, "InvalidAMIID.Malformed", "Invalid id: %q (expecting \"ami-...\")", image)
	}
	rootDevice, ok := s.images[image]
	if !ok {
		return nil, errorf(http.StatusBadRequest, "InvalidAMIID.NotFound", "The image id '[%s]' does not exist", image)
	}
	subnet := form.Get("SubnetId")
	if subnet != "" {
		if _, ok := s.subnets[subnet]; !ok {
			return nil, errorf(http.StatusBadRequest, "InvalidSubnetID.NotFound", "The subnet ID '%s' does not exist", subnet)
		}
	}
	groups := members(form, "SecurityGroupId")
	for _, g := range groups {
		if !validID("sg-", g) {
			return nil, errorf(http.StatusBadRequest, "InvalidGroupId.Malformed", "Invalid id: %q (expecting \"sg-...\")", g)
		}
	}
	userData := form.Get("UserData")
	if userData != "" {
		raw, err := base64.StdEncoding.DecodeString(userData)
		if err != nil {
			return nil, errorf(http.StatusBadRequest, "InvalidParameterValue", "Invalid BASE64 encoding of user data.")
		}
		if len(raw) > maxUserData {
			return nil, errorf(http.StatusBadRequest, "InvalidParameterValue", "User data is limited to %d bytes", maxUserData)
		}
	}
	httpTokens := form.Get("MetadataOptions.HttpTokens")
	switch httpTokens {
	case "", "optional", "required":
	default:
		return nil, errorf(http.StatusBadRequest, "InvalidParameterValue", "Value (%s) for parameter HttpTokens is invalid.", httpTokens)
	}
	profile := form.Get("IamInstanceProfile.Name")
	instanceType := form.Get("InstanceType")
	if instanceType == "" {
		instanceType = defaultInstanceTy
	}

	rootSize := minRootVolumeGiB
	var extra []Volume
	rootMapping := Volume{DeviceName: rootDevice, SizeGiB: minRootVolumeGiB, VolumeType: "gp2", DeleteOnTermination: true}
	for _, i := range indices(form, "BlockDeviceMapping") {
		p := "BlockDeviceMapping." + strconv.Itoa(i) + "."
		v := Volume{DeviceName: form.Get(p + "DeviceName"), VolumeType: "gp2", DeleteOnTermination: true}
		if v.DeviceName == "" {
			return nil, errorf(http.StatusBadRequest, "MissingParameter", "The request must contain the parameter BlockDeviceMapping.%d.DeviceName", i)
		}
		if sz := form.Get(p + "Ebs.VolumeSize"); sz != "" {
			n, err := strconv.Atoi(sz)
			if err != nil || n < 1 {
				return nil, errorf(http.StatusBadRequest, "InvalidParameterValue", "Invalid value '%s' for BlockDeviceMapping.%d.Ebs.VolumeSize", sz, i)
			}
			v.SizeGiB = n
		}
		if vt := form.Get(p + "Ebs.VolumeType"); vt != "" {
			v.VolumeType = vt
		}
		if d := form.Get(p + "Ebs.DeleteOnTermination"); d != "" {
			v.DeleteOnTermination = d == "true"
		}
		if v.DeviceName == rootDevice {
			if v.SizeGiB != 0 && v.SizeGiB < minRootVolumeGiB {
				return nil, errorf(http.StatusBadRequest, "InvalidBlockDeviceMapping",
					"Volume of size %dGB is smaller than snapshot, expect size >= %dGB", v.SizeGiB, minRootVolumeGiB)
			}
			if v.SizeGiB != 0 {
				rootSize = v.SizeGiB
			}
			rootMapping = v
			rootMapping.SizeGiB = rootSize
			continue
		}
		if v.SizeGiB == 0 {
			return nil, errorf(http.StatusBadRequest, "InvalidBlockDeviceMapping", "The volume size of %s is required", v.DeviceName)
		}
		extra = append(extra, v)
	}

	instanceTags := map[string]string{}
	volumeTags := map[string]string{}
	for _, i := range indices(form, "TagSpecification") {
		p := "TagSpecification." + strconv.Itoa(i) + "."
		var into map[string]string
		switch rt := form.Get(p + "ResourceType"); rt {
		case "instance":
			into = instanceTags
		case "volume":
			into = volumeTags
		case "network-interface":
			into = map[string]string{}
		default:
			return nil, errorf(http.StatusBadRequest, "InvalidParameterValue", "'%s' is not a valid taggable resource type for this operation.", rt)
		}
		tagIdx := indices(form, p+"Tag")
		if len(tagIdx) > maxTagsPerSpec {
			return nil, errorf(http.StatusBadRequest, "TagLimitExceeded", "The maximum number of tags per resource is %d.", maxTagsPerSpec)
		}
		for _, j := range tagIdx {
			tp := p + "Tag." + strconv.Itoa(j) + "."
			key := form.Get(tp + "Key")
			switch {
			case key == "":
				return nil, errorf(http.StatusBadRequest, "InvalidParameterValue", "Tag key must not be empty")
			case strings.HasPrefix(key, "aws:"):
				return nil, errorf(http.StatusBadRequest, "InvalidParameterValue", "Tag keys starting with 'aws:' are reserved for internal use")
			}
			if _, dup := into[key]; dup {
				return nil, errorf(http.StatusBadRequest, "InvalidParameterValue", "Duplicate tag key '%s' specified", key)
			}
			into[key] = form.Get(tp + "Value")
		}
	}

	rid := s.nextID("r-")
	for n := 0; n < maxCount; n++ {
		in := s.newInstance(rid, image, instanceType, subnet)
		in.State = StatePending
		in.SecurityGroupIDs = slices.Clone(groups)
		in.InstanceProfile = profile
		in.UserData = userData
		in.HTTPTokens = httpTokens
		in.ClientToken = token
		in.Tags = cloneTags(instanceTags)
		root := rootMapping
		root.ID = s.nextID("vol-")
		root.Tags = cloneTags(volumeTags)
		in.Volumes = append(in.Volumes, root)
		for _, v := range extra {
			v.ID = s.nextID("vol-")
			v.Tags = cloneTags(volumeTags)
			in.Volumes = append(in.Volumes, v)
		}
		s.addInstance(in)
	}
	if token != "" {
		s.tokens[token] = tokenRecord{reservationID: rid, fingerprint: fingerprint}
	}
	resp := s.reservationResponse(requestID, rid)
	// The response says pending, as EC2's does; the instances are running
	// by the time anyone describes them.
	for _, id := range s.reservations[rid] {
		s.instances[id].State = StateRunning
	}
	return resp, nil
}

func (s *Server) reservationResponse(requestID, rid string) xmlRunInstancesResponse {
	resp := xmlRunInstancesResponse{Xmlns: Namespace, RequestID: requestID, ReservationID: rid, OwnerID: OwnerID}
	for _, id := range s.reservations[rid] {
		resp.InstancesSet = append(resp.InstancesSet, s.instanceXML(s.instances[id]))
	}
	return resp
}

// describeInstances returns the visible instances that match every filter
// (and, within a filter, any of its values), in launch order, a page of at
// most MaxResults at a time.
func (s *Server) describeInstances(form url.Values, requestID string) (any, *apiError) {
	ids := members(form, "InstanceId")
	maxResults := form.Get("MaxResults")
	if len(ids) > 0 && maxResults != "" {
		return nil, errorf(http.StatusBadRequest, "InvalidParameterCombination", "The parameter instancesSet cannot be used with the parameter maxResults")
	}
	filters, ferr := parseFilters(form)
	if ferr != nil {
		return nil, ferr
	}
	limit := 0
	if maxResults != "" {
		n, err := strconv.Atoi(maxResults)
		if err != nil || n < minMaxResults || n > maxMaxResults {
			return nil, errorf(http.StatusBadRequest, "InvalidParameterValue",
				"Value ( %s ) for parameter maxResults is invalid. Expecting a value between %d and %d.", maxResults, minMaxResults, maxMaxResults)
		}
		limit = n
	}
	start := 0
	if tok := form.Get("NextToken"); tok != "" {
		n, ok := decodeToken(tok)
		if !ok || n > len(s.order) {
			return nil, errorf(http.StatusBadRequest, "InvalidParameterValue", "Invalid value '%s' for nextToken", tok)
		}
		start = n
	}
	want := map[string]bool{}
	if len(ids) > 0 {
		if err := s.checkInstanceIDs(ids); err != nil {
			return nil, err
		}
		for _, id := range ids {
			want[id] = true
		}
	}

	resp := xmlDescribeInstancesResponse{Xmlns: Namespace, RequestID: requestID}
	byReservation := map[string]int{}
	matched := 0
	for i := start; i < len(s.order); i++ {
		in, ok := s.instances[s.order[i]]
		if !ok || s.hidden[in.ID] || (len(want) > 0 && !want[in.ID]) || !matchAll(filters, in) {
			continue
		}
		if limit > 0 && matched == limit {
			resp.NextToken = encodeToken(i)
			break
		}
		matched++
		k, ok := byReservation[in.ReservationID]
		if !ok {
			k = len(resp.ReservationSet)
			byReservation[in.ReservationID] = k
			resp.ReservationSet = append(resp.ReservationSet, xmlReservation{ReservationID: in.ReservationID, OwnerID: OwnerID})
		}
		resp.ReservationSet[k].InstancesSet = append(resp.ReservationSet[k].InstancesSet, s.instanceXML(in))
	}
	return resp, nil
}

// terminateInstances terminates every instance named, or none: one unknown
// ID fails the whole call with InvalidInstanceID.NotFound, as on EC2.
func (s *Server) terminateInstances(form url.Values, requestID string) (any, *apiError) {
	ids := members(form, "InstanceId")
	if len(ids) == 0 {
		return nil, errorf(http.StatusBadRequest, "MissingParameter", "The request must contain the parameter InstanceId")
	}
	if len(ids) > maxTerminateIDs {
		return nil, errorf(http.StatusBadRequest, "InvalidParameterValue", "The maximum number of instance IDs per request is %d", maxTerminateIDs)
	}
	if err := s.checkInstanceIDs(ids); err != nil {
		return nil, err
	}
	resp := xmlTerminateInstancesResponse{Xmlns: Namespace, RequestID: requestID}
	for _, id := range ids {
		in := s.instances[id]
		prev := in.State
		cur := StateShuttingDown
		if prev == StateTerminated {
			cur = StateTerminated
		}
		in.State = StateTerminated
		resp.InstancesSet = append(resp.InstancesSet, xmlStateChange{
			InstanceID:    id,
			CurrentState:  xmlState{Code: stateCodes[cur], Name: cur},
			PreviousState: xmlState{Code: stateCodes[prev], Name: prev},
		})
	}
	return resp, nil
}

// describeImages describes the registered images, all or those named.
func (s *Server) describeImages(form url.Values, requestID string) (any, *apiError) {
	if len(indices(form, "Filter")) > 0 {
		return nil, errorf(http.StatusBadRequest, "InvalidParameterValue", "ec2test serves DescribeImages by ImageId only")
	}
	ids := members(form, "ImageId")
	if len(ids) == 0 {
		for id := range s.images {
			ids = append(ids, id)
		}
		sort.Strings(ids)
	}
	resp := xmlDescribeImagesResponse{Xmlns: Namespace, RequestID: requestID}
	for _, id := range ids {
		if !validID("ami-", id) {
			return nil, errorf(http.StatusBadRequest, "InvalidAMIID.Malformed", "Invalid id: %q (expecting \"ami-...\")", id)
		}
		root, ok := s.images[id]
		if !ok {
			return nil, errorf(http.StatusBadRequest, "InvalidAMIID.NotFound", "The image id '[%s]' does not exist", id)
		}
		resp.ImagesSet = append(resp.ImagesSet, xmlImage{
			ImageID: id, ImageLocation: OwnerID + "/" + id, ImageState: "available", ImageOwnerID: OwnerID,
			Architecture: "x86_64", ImageType: "machine", Name: id, RootDeviceType: "ebs", RootDeviceName: root,
			BlockDeviceMapping: []xmlBDM{{DeviceName: root, Ebs: xmlEbs{
				SnapshotID: "snap-" + strings.TrimPrefix(id, "ami-"), VolumeSize: minRootVolumeGiB, VolumeType: "gp3", DeleteOnTermination: true,
			}}},
			VirtualizationType: "hvm", Hypervisor: "xen",
		})
	}
	return resp, nil
}

// checkInstanceIDs fails like EC2 when an ID is malformed or names no
// visible instance.
func (s *Server) checkInstanceIDs(ids []string) *apiError {
	var missing []string
	for _, id := range ids {
		if !validID("i-", id) {
			return errorf(http.StatusBadRequest, "InvalidInstanceID.Malformed", "Invalid id: %q", id)
		}
		if _, ok := s.instances[id]; !ok || s.hidden[id] {
			missing = append(missing, id)
		}
	}
	switch len(missing) {
	case 0:
		return nil
	case 1:
		return errorf(http.StatusBadRequest, "InvalidInstanceID.NotFound", "The instance ID '%s' does not exist", missing[0])
	default:
		return errorf(http.StatusBadRequest, "InvalidInstanceID.NotFound", "The instance IDs '%s' do not exist", strings.Join(missing, ", "))
	}
}

// newInstance makes an instance record; runs under s.mu.
func (s *Server) newInstance(rid, image, instanceType, subnet string) *Instance {
	zone, ok := s.subnets[subnet]
	if !ok {
		zone = "us-east-1a"
	}
	n := len(s.order)
	subnetNum := slices.Index(s.subnetOrder, subnet) + 1
	return &Instance{
		ID:               s.nextID("i-"),
		ReservationID:    rid,
		ImageID:          image,
		InstanceType:     instanceType,
		SubnetID:         subnet,
		AvailabilityZone: zone,
		PrivateIP:        fmt.Sprintf("10.%d.%d.%d", subnetNum, (n/250)%256, n%250+4),
		LaunchTime:       time.Now().UTC().Truncate(time.Millisecond),
		Tags:             map[string]string{},
	}
}

// addInstance stores in; runs under s.mu.
func (s *Server) addInstance(in *Instance) {
	s.instances[in.ID] = in
	s.order = append(s.order, in.ID)
	s.reservations[in.ReservationID] = append(s.reservations[in.ReservationID], in.ID)
	if s.lag {
		s.hidden[in.ID] = true
	}
}

func (s *Server) instanceXML(in *Instance) xmlInstance {
	x := xmlInstance{
		InstanceID:       in.ID,
		ImageID:          in.ImageID,
		InstanceState:    xmlState{Code: stateCodes[in.State], Name: in.State},
		PrivateDNSName:   "ip-" + strings.ReplaceAll(in.PrivateIP, ".", "-") + ".ec2.internal",
		InstanceType:     in.InstanceType,
		LaunchTime:       formatTime(in.LaunchTime),
		Placement:        xmlPlacement{AvailabilityZone: in.AvailabilityZone, Tenancy: "default"},
		SubnetID:         in.SubnetID,
		PrivateIPAddress: in.PrivateIP,
		RootDeviceType:   "ebs",
		ClientToken:      in.ClientToken,
		MetadataOptions:  xmlMetadataOptions{State: "applied", HTTPTokens: orDefault(in.HTTPTokens, "optional"), HTTPPutResponseHopLimit: 2, HTTPEndpoint: "enabled"},
	}
	if in.State == StateTerminated {
		// A terminated instance has left its network.
		x.PrivateIPAddress, x.PrivateDNSName = "", ""
	}
	for _, g := range in.SecurityGroupIDs {
		x.GroupSet.Items = append(x.GroupSet.Items, xmlGroup{GroupID: g})
	}
	for i, v := range in.Volumes {
		if i == 0 {
			x.RootDeviceName = v.DeviceName
		}
		x.BlockDeviceMapping = append(x.BlockDeviceMapping, xmlBDM{DeviceName: v.DeviceName, Ebs: xmlEbs{
			VolumeID: v.ID, Status: "attached", AttachTime: formatTime(in.LaunchTime), DeleteOnTermination: v.DeleteOnTermination,
		}})
	}
	if in.InstanceProfile != "" {
		x.IAMInstanceProfile = &xmlProfile{
			Arn: "arn:aws:iam::" + OwnerID + ":instance-profile/" + in.InstanceProfile,
			ID:  "AIPA" + strings.ToUpper(strings.TrimPrefix(in.ID, "i-")),
		}
	}
	keys := make([]string, 0, len(in.Tags))
	for k := range in.Tags {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	for _, k := range keys {
		x.TagSet = append(x.TagSet, xmlTag{Key: k, Value: in.Tags[k]})
	}
	return x
}

// filter is one Filter.N of a describe request. Values without wildcards
// are kept in a set, so a filter of hundreds of IDs stays cheap.
type filter struct {
	name     string
	values   []string
	exact    map[string]bool
	patterns []string
}

var instanceFilters = map[string]func(*Instance) string{
	"instance-id":         func(in *Instance) string { return in.ID },
	"instance-state-name": func(in *Instance) string { return in.State },
	"instance-state-code": func(in *Instance) string { return strconv.Itoa(stateCodes[in.State]) },
	"instance-type":       func(in *Instance) string { return in.InstanceType },
	"image-id":            func(in *Instance) string { return in.ImageID },
	"subnet-id":           func(in *Instance) string { return in.SubnetID },
	"availability-zone":   func(in *Instance) string { return in.AvailabilityZone },
	"client-token":        func(in *Instance) string { return in.ClientToken },
	"private-ip-address":  func(in *Instance) string { return in.PrivateIP },
	"reservation-id":      func(in *Instance) string { return in.ReservationID },
}

func parseFilters(form url.Values) ([]filter, *apiError) {
	var out []filter
	for _, i := range indices(form, "Filter") {
		p := "Filter." + strconv.Itoa(i) + "."
		f := filter{name: form.Get(p + "Name"), values: members(form, p+"Value")}
		_, known := instanceFilters[f.name]
		tagFilter := strings.HasPrefix(f.name, "tag:") && len(f.name) > len("tag:")
		if !known && f.name != "tag-key" && !tagFilter {
			return nil, errorf(http.StatusBadRequest, "InvalidParameterValue", "The filter '%s' is invalid", f.name)
		}
		if len(f.values) == 0 {
			return nil, errorf(http.StatusBadRequest, "InvalidParameterValue", "The filter '%s' has no values", f.name)
		}
		f.exact = map[string]bool{}
		for _, v := range f.values {
			if strings.ContainsAny(v, "*?") {
				f.patterns = append(f.patterns, v)
			} else {
				f.exact[v] = true
			}
		}
		out = append(out, f)
	}
	return out, nil
}

func matchAll(filters []filter, in *Instance) bool {
	for _, f := range filters {
		if !f.match(in) {
			return false
		}
	}
	return true
}

func (f filter) match(in *Instance) bool {
	switch {
	case f.name == "tag-key":
		for k := range in.Tags {
			if f.matchValue(k) {
				return true
			}
		}
		return false
	case strings.HasPrefix(f.name, "tag:"):
		got, ok := in.Tags[strings.TrimPrefix(f.name, "tag:")]
		return ok && f.matchValue(got)
	default:
		return f.matchValue(instanceFilters[f.name](in))
	}
}

// matchValue reports whether s equals a value or matches a pattern.
func (f filter) matchValue(s string) bool {
	if f.exact[s] {
		return true
	}
	for _, p := range f.patterns {
		if glob(p, s) {
			return true
		}
	}
	return false
}

// glob matches s against a filter value, in which * matches any run of
// characters and ? any one character, as in EC2 filters.
func glob(pattern, s string) bool {
	for len(pattern) > 0 {
		switch pattern[0] {
		case '*':
			for i := len(s); i >= 0; i-- {
				if glob(pattern[1:], s[i:]) {
					return true
				}
			}
			return false
		case '?':
			if s == "" {
				return false
			}
			pattern, s = pattern[1:], s[1:]
		default:
			if s == "" || s[0] != pattern[0] {
				return false
			}
			pattern, s = pattern[1:], s[1:]
		}
	}
	return s == ""
}

// members returns the values of the list parameter prefix.1, prefix.2, ...
// in index order.
func members(form url.Values, prefix string) []string {
	var out []string
	for _, i := range indices(form, prefix) {
		if v, ok := form[prefix+"."+strconv.Itoa(i)]; ok && len(v) > 0 {
			out = append(out, v[0])
		}
	}
	return out
}

// indices returns the distinct N of the parameters prefix.N and prefix.N.*,
// sorted.
func indices(form url.Values, prefix string) []int {
	seen := map[int]bool{}
	for k := range form {
		rest, ok := strings.CutPrefix(k, prefix+".")
		if !ok {
			continue
		}
		num, _, _ := strings.Cut(rest, ".")
		if n, err := strconv.Atoi(num); err == nil && n > 0 {
			seen[n] = true
		}
	}
	out := make([]int, 0, len(seen))
	for n := range seen {
		out = append(out, n)
	}
	sort.Ints(out)
	return out
}

func countParam(form url.Values, name string) (int, *apiError) {
	v := form.Get(name)
	if v == "" {
		return 0, errorf(http.StatusBadRequest, "MissingParameter", "The request must contain the parameter %s", name)
	}
	n, err := strconv.Atoi(v)
	if err != nil || n < 1 {
		return 0, errorf(http.StatusBadRequest, "InvalidParameterValue", "Invalid value '%s' for %s", v, name)
	}
	return n, nil
}

// launchFingerprint identifies a launch request's parameters apart from its
// client token, to detect a token reused for a different launch.
func launchFingerprint(form url.Values) string {
	f := cloneValues(form)
	f.Del("ClientToken")
	return f.Encode()
}

// validID reports whether id is prefix followed by 8 or 17 hex digits.
func validID(prefix, id string) bool {
	hexPart, ok := strings.CutPrefix(id, prefix)
	if !ok || (len(hexPart) != 8 && len(hexPart) != 17) {
		return false
	}
	return strings.Trim(hexPart, "0123456789abcdef") == ""
}

func isASCII(s string) bool {
	for i := 0; i < len(s); i++ {
		if s[i] < 0x20 || s[i] > 0x7e {
			return false
		}
	}
	return true
}

func encodeToken(pos int) string {
	return base64.RawURLEncoding.EncodeToString([]byte("ec2test:" + strconv.Itoa(pos)))
}

func decodeToken(tok string) (int, bool) {
	raw, err := base64.RawURLEncoding.DecodeString(tok)
	if err != nil {
		return 0, false
	}
	num, ok := strings.CutPrefix(string(raw), "ec2test:")
	if !ok {
		return 0, false
	}
	n, err := strconv.Atoi(num)
	return n, err == nil && n >= 0
}

func orDefault(s, def string) string {
	if s == "" {
		return def
	}
	return s
}
